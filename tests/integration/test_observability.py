"""Dashboards and alert rules against a real Prometheus (Debian's package) scraping the service
under load: every panel's query must succeed and return data; every rule must evaluate cleanly."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request

import pytest

from moderator.local.service import free_port
from tests.conftest import REPO
from tests.integration.conftest import produce, small_jpegs, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "moderator"
SUBSTITUTIONS = {"$__rate_interval": "15s", "$__range": "2m", "$job": JOB, "$category": ".*", "$ray_job": "ray", "$triton_job": "triton", "$deployment": ".*"}
BACKENDS_DASHBOARD = "moderator-backends.json"


class Prometheus:
    def __init__(self, tmp_path, target: str, more_jobs: dict[str, str] | None = None) -> None:
        binary = shutil.which("prometheus") or pytest.fail("prometheus is not installed (.ci/run installs Debian's package)")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(REPO / "deploy/prometheus/rules/moderator.rules.yml")],
                    "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [t]}]} for job, t in {JOB: target, **(more_jobs or {})}.items()],
                }
            )
        )
        self.log = (tmp_path / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def panel_queries(backends: bool = False):
    """Every panel query of the service's dashboards, or (``backends``) of the backends one."""
    for path in sorted((REPO / "deploy/grafana/dashboards").glob("*.json")):
        if (path.name == BACKENDS_DASHBOARD) != backends:
            continue
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                yield f"{dash['title']} / {panel['title']} / {target['refId']}", expr


def assert_all_return_data(prom: Prometheus, queries: list[tuple[str, str]]) -> None:
    failures = []
    for name, expr in queries:
        body = prom.api("/api/v1/query", query=expr)
        if body.get("status") != "success":
            failures.append(f"{name}: error {body}")
        elif not body["data"]["result"]:
            failures.append(f"{name}: no data for {expr}")
    assert not failures, "\n".join(failures)


def test_every_dashboard_panel_returns_data_and_every_rule_evaluates(broker, topics, service, tmp_path):
    t = topics(2)
    # Banks matching two of the 25 sample images (one deny, one allow), so the known-content
    # panels have matches; the samples repeat, so the result cache hits.
    import hashlib

    from moderator.hashing.bankfile import write_bank

    samples = [value for _, _, value, _ in small_jpegs("bank", 2)]
    banks = tmp_path / "banks"
    banks.mkdir()
    write_bank(banks / "known-bad.csv", "deny", [{"hash_type": "sha256", "hash": hashlib.sha256(samples[0]).hexdigest()}])
    write_bank(banks / "cleared.csv", "allow", [{"hash_type": "sha256", "hash": hashlib.sha256(samples[1]).hexdigest()}])
    svc = service(t, kafka={"lag_interval_ms": 1000}, batch={"micro_batch_size": 4}, hashing={"banks_dir": str(banks)})
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            batch = list(small_jpegs(f"{t.input}-{n}", 20))
            batch.append((f"junk-{n}", b"junk", b"not an image at all", [("moderation-id", f"junk-{n}".encode())]))
            produce(broker.bootstrap, t.input, batch)
            n += 1
            stop.wait(0.5)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{svc.port}")
    try:
        wait_until(prom.ready, 60, "Prometheus to start")
        wait_until(lambda: prom.api("/api/v1/query", query=f'up{{job="{JOB}"}} == 1')["data"]["result"], 60, "the first scrape")
        # Enough history for 2-minute increases and 15-second rates, under continuous load.
        wait_until(
            lambda: prom.api("/api/v1/query", query=f'count_over_time(moderator_verdicts_total{{job="{JOB}",decision="allow"}}[2m]) >= 20')["data"]["result"],
            120,
            "twenty scrapes with traffic",
        )
        queries = list(panel_queries())
        assert len(queries) >= 32
        assert_all_return_data(prom, queries)

        groups = prom.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        import yaml

        declared = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "moderator.rules.yml").read_text())
        assert len(rules) == sum(len(g["rules"]) for g in declared["groups"]) == 10
        bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
        assert not bad, bad
        firing = [r["name"] for r in rules if r["state"] == "firing"]
        assert not firing, f"a healthy service under load fires {firing}"
    finally:
        stop.set()
        loader.join(10)
        prom.stop()
    assert svc.terminate() == 0


def test_backends_dashboard_returns_data_from_ray_and_triton(broker, topics, service, local_ray, local_triton, tmp_path):
    """Two services under load, one on Ray Serve (autoscaling on) and one on Triton; Prometheus
    scrapes them, Ray's metrics endpoint and Triton's: every backends panel returns data."""
    from tests.conftest import TINY_MODEL
    from tests.integration.conftest import RAY_TEST_APP, delete_serve_app

    ta, tb = topics(1), topics(1)
    ray_svc = service(
        ta,
        encoder={
            "backend": "ray",
            "model_dir": str(TINY_MODEL),
            "ray": {**RAY_TEST_APP, "address": local_ray.address, "app_name": "moderator-observability", "max_replicas": 2},
        },
    )
    triton_svc = service(tb, encoder={"backend": "triton", "model_dir": str(TINY_MODEL), "triton": {"url": local_triton.grpc_url}})
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            for t in (ta, tb):
                produce(broker.bootstrap, t.input, list(small_jpegs(f"{t.input}-{n}", 16)))
            n += 1
            stop.wait(0.5)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    prom = Prometheus(
        tmp_path,
        f"127.0.0.1:{ray_svc.port}",
        {
            "moderator-triton": f"127.0.0.1:{triton_svc.port}",
            "ray": f"127.0.0.1:{local_ray.metrics_port}",
            "triton": f"127.0.0.1:{local_triton.metrics_port}",
        },
    )
    try:
        wait_until(prom.ready, 60, "Prometheus to start")
        for metric in ("ray_serve_deployment_processing_latency_ms_count", "nv_inference_exec_count"):
            wait_until(lambda m=metric: prom.api("/api/v1/query", query=f"count_over_time({m}[2m]) >= 5")["data"]["result"], 180, f"five scrapes of {metric}")
        queries = list(panel_queries(backends=True))
        assert len(queries) >= 10
        assert_all_return_data(prom, queries)
    finally:
        stop.set()
        loader.join(10)
        prom.stop()
        delete_serve_app(local_ray, "moderator-observability")
    assert ray_svc.terminate() == 0 and triton_svc.terminate() == 0
