#!/usr/bin/env python
"""Write the Grafana dashboards in deploy/grafana/dashboards/ (run after editing this file).

The JSON is generated so that every panel follows the same rules: the `datasource` and `job`
template variables, `$__rate_interval` in rates, units set. tests/integration/test_observability.py
runs every panel's query against a real Prometheus scraping the service.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
J = 'job=~"$job"'
RI = "$__rate_interval"


def variables(extra: list[dict] | None = None) -> dict:
    return {
        "list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
            {
                "name": "job",
                "label": "Job",
                "type": "query",
                "datasource": DS,
                "query": {"query": "label_values(moderator_build_info, job)", "refId": "job"},
                "definition": "label_values(moderator_build_info, job)",
                "refresh": 2,
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {},
                "hide": 0,
            },
            *(extra or []),
        ]
    }


def panel(
    title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12, h: int = 8, kind: str = "timeseries", description: str = "", **extra
) -> dict:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)} for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}} if kind == "timeseries" else {},
        **extra,
    }


def quantiles(stage: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    return [
        (
            f'histogram_quantile({q}, sum by ({group}) (rate(moderator_stage_seconds_bucket{{{J}, stage="{stage}"}}[{RI}])))',
            f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in (0.5, 0.99)
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict], extra_vars: list[dict] | None = None) -> dict:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["moderator"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "templating": variables(extra_vars),
        "annotations": {"list": []},
        "panels": panels,
    }


def overview() -> dict:
    return dashboard(
        "moderator-overview",
        "moderator / overview",
        "Throughput, decisions, latency, lag, dead letters and errors.",
        [
            panel(
                "Verdicts by decision",
                [(f"sum by (decision) (rate(moderator_verdicts_total{{{J}}}[{RI}]))", "{{decision}}")],
                "reqps",
                0,
                0,
                description="Verdicts acknowledged by the broker per second.",
            ),
            panel("Input consumed", [(f"sum by (topic) (rate(moderator_messages_consumed_total{{{J}}}[{RI}]))", "{{topic}}")], "reqps", 12, 0),
            panel(
                "Block rate",
                [(f'sum(rate(moderator_verdicts_total{{{J}, decision="block"}}[{RI}])) / sum(rate(moderator_verdicts_total{{{J}}}[{RI}]))', "block share")],
                "percentunit",
                0,
                8,
                w=6,
                kind="stat",
            ),
            panel(
                "Review rate",
                [(f'sum(rate(moderator_verdicts_total{{{J}, decision="review"}}[{RI}])) / sum(rate(moderator_verdicts_total{{{J}}}[{RI}]))', "review share")],
                "percentunit",
                6,
                8,
                w=6,
                kind="stat",
            ),
            panel("Workers up", [(f"count(up{{{J}}} == 1)", "up")], "none", 12, 8, w=6, kind="stat"),
            panel("Assigned partitions", [(f"sum(moderator_assigned_partitions{{{J}}})", "assigned")], "none", 18, 8, w=6, kind="stat"),
            panel(
                "End-to-end latency", quantiles("end_to_end"), "s", 0, 16, description="Input message timestamp to the broker's acknowledgement of its verdict."
            ),
            panel(
                "Stage latency p99",
                [(f"histogram_quantile(0.99, sum by (le, stage) (rate(moderator_stage_seconds_bucket{{{J}}}[{RI}])))", "{{stage}}")],
                "s",
                12,
                16,
            ),
            panel(
                "Consumer lag",
                [(f"sum by (topic, partition) (moderator_consumer_lag_messages{{{J}}})", "{{topic}}[{{partition}}]")],
                "short",
                0,
                24,
                description="End offset minus committed offset per partition.",
            ),
            panel(
                "In flight and paused",
                [(f"sum(moderator_in_flight_messages{{{J}}})", "in flight"), (f"sum(moderator_paused_partitions{{{J}}})", "paused partitions")],
                "short",
                12,
                24,
            ),
            panel("Dead letters by reason", [(f"sum by (reason) (rate(moderator_dead_letters_total{{{J}}}[{RI}]))", "{{reason}}")], "reqps", 0, 32),
            panel(
                "Errors and retries",
                [
                    (f"sum by (backend) (rate(moderator_backend_errors_total{{{J}}}[{RI}]))", "encoder errors {{backend}}"),
                    (f"sum(rate(moderator_delivery_retries_total{{{J}}}[{RI}]))", "delivery retries"),
                    (f"sum(rate(moderator_poll_errors_total{{{J}}}[{RI}]))", "poll errors"),
                    (f'sum(rate(moderator_offset_commits_total{{{J}, result="failed"}}[{RI}]))', "failed commits"),
                    (f"sum(rate(moderator_unreadable_records_total{{{J}}}[{RI}]))", "unreadable records"),
                    (f"sum by (reason) (rate(moderator_decoder_restarts_total{{{J}}}[{RI}]))", "decoder restarts ({{reason}})"),
                ],
                "reqps",
                12,
                32,
            ),
            panel(
                "Frames",
                [
                    (f"sum by (result) (rate(moderator_frames_total{{{J}}}[{RI}]))", "frames {{result}}"),
                    (f"sum by (rule) (rate(moderator_frame_overflows_total{{{J}}}[{RI}]))", "overflows ({{rule}})"),
                    (f"histogram_quantile(0.99, sum by (le) (rate(moderator_frames_per_message_bucket{{{J}}}[{RI}])))", "p99 frames per message"),
                ],
                "short",
                0,
                40,
                w=24,
                description="Every frame of animated images and video is decoded; a frame the model would see as it sees a scored one"
                " (media.frame_change_threshold) is skipped. Overflows: messages not all of which was scored (more distinct"
                " frames than media.max_frames, a video that stopped early, or a frame too long for media.max_crops squares);"
                " the policy's frames.on_overflow decides.",
            ),
        ],
    )


def policy() -> dict:
    category = {
        "name": "category",
        "label": "Category",
        "type": "query",
        "datasource": DS,
        "query": {"query": f"label_values(moderator_category_actions_total{{{J}}}, category)", "refId": "category"},
        "definition": f"label_values(moderator_category_actions_total{{{J}}}, category)",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "hide": 0,
    }
    C = f'{J}, category=~"$category"'
    return dashboard(
        "moderator-policy",
        "moderator / policy",
        "What the policy catches, per category, and policy changes.",
        [
            panel(
                "Category actions",
                [(f"sum by (category, action) (rate(moderator_category_actions_total{{{C}}}[{RI}]))", "{{category}} {{action}}")],
                "reqps",
                0,
                0,
                w=24,
                description="Categories that fired in acknowledged verdicts, by the action they asked for.",
            ),
            panel(
                "Share of verdicts where the category blocks",
                [
                    (
                        f'sum by (category) (rate(moderator_category_actions_total{{{C}, action="block"}}[{RI}])) / scalar(sum(rate(moderator_verdicts_total{{{J}}}[{RI}])))',
                        "{{category}}",
                    )
                ],
                "percentunit",
                0,
                8,
            ),
            panel(
                "Share of verdicts where the category asks for review",
                [
                    (
                        f'sum by (category) (rate(moderator_category_actions_total{{{C}, action="review"}}[{RI}])) / scalar(sum(rate(moderator_verdicts_total{{{J}}}[{RI}])))',
                        "{{category}}",
                    )
                ],
                "percentunit",
                12,
                8,
            ),
            panel(
                "Decisions in range",
                [(f"sum by (decision) (increase(moderator_verdicts_total{{{J}}}[$__range]))", "{{decision}}")],
                "short",
                0,
                16,
                w=8,
                kind="piechart",
            ),
            panel(
                "Policy in force",
                [(f"moderator_policy_info{{{J}}}", "{{instance}} {{name}}@{{version}}")],
                "none",
                8,
                16,
                w=8,
                kind="table",
                description="Policy name and content hash per worker; more than one version means a rollout in progress.",
            ),
            panel(
                "Policy reloads",
                [(f"sum by (role, result) (increase(moderator_policy_reloads_total{{{J}}}[{RI}]))", "{{role}} {{result}}")],
                "short",
                16,
                16,
                w=8,
            ),
            panel(
                "Shadow policy agreement",
                [(f"sum by (result) (rate(moderator_shadow_agreement_total{{{J}}}[{RI}]))", "{{result}}")],
                "reqps",
                0,
                24,
                description="How often the candidate (shadow) policy would decide as the acting one does. Empty unless MODERATOR_POLICY__SHADOW_PATH is set.",
            ),
            panel("Shadow policy decisions", [(f"sum by (decision) (rate(moderator_shadow_decisions_total{{{J}}}[{RI}]))", "{{decision}}")], "reqps", 12, 24),
            *known_content(32),
        ],
        extra_vars=[category],
    )


def known_content(y: int) -> list[dict]:
    """Hash banks and the result cache (docs/policies.md#known-content)."""
    return [
        panel(
            "Known content: hash matches by bank",
            [(f"sum by (bank, kind) (rate(moderator_hash_matches_total{{{J}}}[{RI}]))", "{{bank}} ({{kind}})")],
            "reqps",
            0,
            y,
            description="Verdicts decided by a deny bank or overridden by an allow bank, by bank. "
            "A deny bank that suddenly matches a lot may hold a hash of something common.",
        ),
        panel(
            "Known content: result cache hit rate",
            [(f'sum(rate(moderator_result_cache_total{{{J}, result="hit"}}[{RI}])) / sum(rate(moderator_result_cache_total{{{J}}}[{RI}]))', "hit rate")],
            "percentunit",
            12,
            y,
            w=6,
            kind="stat",
            description="Share of images decided from the cache: identical reposts, no decode or encode.",
        ),
        panel(
            "Known content: encodes saved",
            [(f"sum by (reason) (rate(moderator_encodes_saved_total{{{J}}}[{RI}]))", "{{reason}}")],
            "reqps",
            18,
            y,
            w=6,
            description="Images decided without the encoder: cache hits and deny matches that block.",
        ),
        panel(
            "Known content: bank lookup latency",
            [(f"histogram_quantile({q}, sum by (le) (rate(moderator_hash_lookup_seconds_bucket{{{J}}}[{RI}])))", f"p{int(q * 100)}") for q in (0.5, 0.99)],
            "s",
            0,
            y + 8,
            description="All banks, one message: SHA-256 and every frame's PDQ.",
        ),
        panel(
            "Known content: banks in service",
            [(f"sum by (bank, kind, hash_type) (moderator_bank_entries{{{J}}})", "{{bank}} {{kind}} {{hash_type}}")],
            "short",
            12,
            y + 8,
            w=6,
            kind="table",
            description="Hashes per bank. A bank missing here did not load: see the bank reloads and the log.",
        ),
        panel(
            "Known content: bank reloads",
            [(f"sum by (result) (increase(moderator_bank_reloads_total{{{J}}}[{RI}]))", "{{result}}"), (f"max(moderator_banks_stale{{{J}}})", "stale")],
            "short",
            18,
            y + 8,
            w=6,
            description="stale = 1: a bank file on disk does not load; the previous banks keep serving.",
        ),
    ]


def serving() -> dict:
    return dashboard(
        "moderator-serving",
        "moderator / serving",
        "The encoder: batches, latency, errors, model.",
        [
            panel("Images encoded", [(f"sum(rate(moderator_batch_size_sum{{{J}}}[{RI}]))", "images/s")], "reqps", 0, 0),
            panel(
                "Mean batch size",
                [(f"sum(rate(moderator_batch_size_sum{{{J}}}[{RI}])) / sum(rate(moderator_batch_size_count{{{J}}}[{RI}]))", "mean")],
                "short",
                12,
                0,
            ),
            panel("Encoder call latency", quantiles("encode"), "s", 0, 8, description="One encoder call per batch."),
            panel("Decode latency", quantiles("decode"), "s", 12, 8, description="Decode and preprocess, per image."),
            panel("Queue and produce latency", quantiles("queue", by="stage") + quantiles("produce", by="stage"), "s", 0, 16),
            panel("Encoder errors", [(f"sum by (backend) (rate(moderator_backend_errors_total{{{J}}}[{RI}]))", "{{backend}}")], "reqps", 12, 16),
            panel(
                "Model in service",
                [(f"moderator_model_info{{{J}}}", "{{instance}} {{name}} {{precision}} {{backend}} {{providers}}")],
                "none",
                0,
                24,
                w=24,
                kind="table",
            ),
        ],
    )


RJ = 'job=~"$ray_job"'
TJ = 'job=~"$triton_job"'
ENC = f'{RJ}, deployment=~"$deployment"'


def _job_variable(name: str, label: str, metric: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": f"label_values({metric}, job)", "refId": name},
        "definition": f"label_values({metric}, job)",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "hide": 0,
    }


def backends() -> dict:
    """Ray Serve's and Triton's own metrics (their scrape jobs), beside the service's view."""
    deployment = {
        "name": "deployment",
        "label": "Serve deployment",
        "type": "query",
        "datasource": DS,
        "query": {"query": 'label_values(ray_serve_deployment_replica_healthy{job=~"$ray_job"}, deployment)', "refId": "deployment"},
        "definition": 'label_values(ray_serve_deployment_replica_healthy{job=~"$ray_job"}, deployment)',
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "hide": 0,
    }
    ray_ms = "histogram_quantile({q}, sum by (le, deployment) (rate(ray_serve_deployment_processing_latency_ms_bucket{{{f}}}[{ri}]))) / 1000"
    return dashboard(
        "moderator-backends",
        "moderator / backends",
        "Remote encoder backends: Ray Serve replicas and batching, Triton queue and compute.",
        [
            panel(
                "Encoder calls seen by the service",
                [
                    (f"sum(rate(moderator_batch_size_count{{{J}}}[{RI}]))", "batches/s"),
                    (f"sum by (backend) (rate(moderator_backend_errors_total{{{J}}}[{RI}]))", "{{backend}} failed calls/s"),
                ],
                "reqps",
                0,
                0,
                w=24,
                description="Batches the service sends to its backend; compare with the backend's own counts below.",
            ),
            panel(
                "Ray Serve: healthy replicas",
                [
                    (f"sum by (application, deployment) (ray_serve_deployment_replica_healthy{{{ENC}}})", "{{application}}/{{deployment}}"),
                    (f"sum by (application, deployment) (ray_serve_autoscaling_target_replicas{{{ENC}}})", "{{deployment}} autoscaling target"),
                ],
                "short",
                0,
                8,
                description="Encoder and consumer replicas; the target appears when autoscaling is on.",
            ),
            panel(
                "Ray Serve: requests and errors",
                [
                    (f"sum by (deployment) (rate(ray_serve_deployment_request_counter_total{{{ENC}}}[{RI}]))", "{{deployment}} requests/s"),
                    (f"sum by (deployment) (rate(ray_serve_deployment_error_counter_total{{{ENC}}}[{RI}])) or on() vector(0)", "errors/s"),
                ],
                "reqps",
                12,
                8,
            ),
            panel(
                "Ray Serve: replica processing latency",
                [(ray_ms.format(q=q, f=ENC, ri=RI), f"p{int(q * 100)} {{{{deployment}}}}") for q in (0.5, 0.99)],
                "s",
                0,
                16,
                description="Inside the replica, from dequeue to response (per consumer batch).",
            ),
            panel(
                "Ray Serve: images per encoder call",
                [
                    (
                        f"sum(rate(ray_serve_actual_batch_size_sum{{{RJ}}}[{RI}])) / sum(rate(ray_serve_actual_batch_size_count{{{RJ}}}[{RI}]))",
                        "mean images per call",
                    ),
                    (f"sum(ray_serve_batch_queue_length{{{RJ}}})", "queued requests"),
                ],
                "short",
                12,
                16,
                description="@serve.batch merges consumer batches up to encoder.ray.replica_batch_size images.",
            ),
            panel(
                "Triton: inferences",
                [
                    (f"sum by (model) (rate(nv_inference_count{{{TJ}}}[{RI}]))", "{{model}} inferences/s"),
                    (f"sum by (model) (rate(nv_inference_request_failure{{{TJ}}}[{RI}]))", "{{model}} failures/s"),
                ],
                "reqps",
                0,
                24,
            ),
            panel(
                "Triton: images per model execution",
                [(f"sum by (model) (rate(nv_inference_count{{{TJ}}}[{RI}])) / sum by (model) (rate(nv_inference_exec_count{{{TJ}}}[{RI}]))", "{{model}}")],
                "short",
                12,
                24,
                description="Dynamic batching: inferences per model execution.",
            ),
            panel(
                "Triton: queue and compute time per request",
                [
                    (
                        f"sum by (model) (rate(nv_inference_queue_duration_us{{{TJ}}}[{RI}])) / sum by (model) (rate(nv_inference_request_success{{{TJ}}}[{RI}])) / 1e6",
                        "{{model}} queue",
                    ),
                    (
                        f"sum by (model) (rate(nv_inference_compute_infer_duration_us{{{TJ}}}[{RI}])) / sum by (model) (rate(nv_inference_request_success{{{TJ}}}[{RI}])) / 1e6",
                        "{{model}} compute",
                    ),
                ],
                "s",
                0,
                32,
                w=24,
            ),
        ],
        extra_vars=[
            _job_variable("ray_job", "Ray job", "ray_serve_deployment_replica_healthy"),
            deployment,
            _job_variable("triton_job", "Triton job", "nv_inference_count"),
        ],
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in (("overview", overview), ("policy", policy), ("serving", serving), ("backends", backends)):
        (OUT / f"moderator-{name}.json").write_text(json.dumps(build(), indent=2) + "\n")
        print(OUT / f"moderator-{name}.json")


if __name__ == "__main__":
    main()
