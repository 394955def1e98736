"""Every metric the service exports, declared once, against a registry that is passed in.

Label values come from closed sets only: configured topics, decisions, policy categories,
dead-letter reasons, stage names. docs/metrics.md lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, Info, PlatformCollector, ProcessCollector

from moderator import __version__
from moderator.errors import DEAD_LETTER_REASONS
from moderator.policy.score import ACTIONS

STAGES = ("decode", "queue", "encode", "score", "produce", "end_to_end")
LOOKUP_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
HASH_TYPES = ("sha256", "pdq")
ENCODES_SAVED = ("cache", "hash_match")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
FRAME_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # prometheus_client's standard collectors, as on its default registry: process_* (CPU,
        # resident memory, open file descriptors, start time), python_gc_* and python_info.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Info("moderator_build", "Build of the running service.", registry=r)
        self.model_info = Info("moderator_model", "Model being served.", registry=r)
        self.policy_info = Info("moderator_policy", "Policy being applied.", registry=r)
        self.messages_consumed = Counter("moderator_messages_consumed_total", "Messages polled from the input topics.", ["topic"], registry=r)
        self.verdicts = Counter("moderator_verdicts_total", "Verdicts acknowledged by the broker, by decision.", ["decision"], registry=r)
        self.category_actions = Counter(
            "moderator_category_actions_total", "Categories that fired in acknowledged verdicts, by action.", ["category", "action"], registry=r
        )
        self.dead_letters = Counter("moderator_dead_letters_total", "Dead letters acknowledged by the broker, by reason.", ["reason"], registry=r)
        self.stage_seconds = Histogram(
            "moderator_stage_seconds",
            "Latency of each pipeline stage; end_to_end runs from the input message's timestamp to the broker's acknowledgement of its verdict.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "moderator_batch_size", "Squares per encoder call (a frame of a wide image may be several: media.crops).", buckets=BATCH_BUCKETS, registry=r
        )
        self.frames_per_message = Histogram(
            "moderator_frames_per_message", "Frames in each scored message's file (1 for a still image).", buckets=FRAME_BUCKETS, registry=r
        )
        self.frames = Counter(
            "moderator_frames_total",
            "Frames of scored messages, by what happened to them: scored, or skipped "
            "(a near-duplicate of a scored frame, or left out of the sample on overflow).",
            ["result"],
            registry=r,
        )
        self.frame_overflows = Counter(
            "moderator_frame_overflows_total",
            "Messages not all of which was scored (more distinct frames than media.max_frames, a video that stopped early, or a frame too"
            " long for media.max_crops squares), by the policy's frames.on_overflow rule.",
            ["rule"],
            registry=r,
        )
        self.in_flight = Gauge("moderator_in_flight_messages", "Messages polled whose verdict is not yet acknowledged.", registry=r)
        self.assigned_partitions = Gauge("moderator_assigned_partitions", "Input partitions assigned to this worker.", registry=r)
        self.paused_partitions = Gauge("moderator_paused_partitions", "Assigned partitions paused by backpressure.", registry=r)
        self.partition_pauses = Counter("moderator_partition_pauses_total", "Times consumption paused because the in-flight window was full.", registry=r)
        self.consumer_lag = Gauge(
            "moderator_consumer_lag_messages",
            "Per assigned input partition: end offset minus this group's committed offset (messages not yet safely processed).",
            ["topic", "partition"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "moderator_policy_reloads_total", "Policy reload attempts (file change or SIGHUP), by policy role and result.", ["role", "result"], registry=r
        )
        self.shadow_decisions = Counter(
            "moderator_shadow_decisions_total", "Decisions of the shadow (candidate) policy, never acted on.", ["decision"], registry=r
        )
        self.shadow_agreement = Counter(
            "moderator_shadow_agreement_total", "Verdicts where the shadow policy's decision agrees or not with the acting one.", ["result"], registry=r
        )
        self.commits = Counter("moderator_offset_commits_total", "Offset commits, by result.", ["result"], registry=r)
        self.backend_errors = Counter("moderator_backend_errors_total", "Encoder calls that failed and were retried.", ["backend"], registry=r)
        self.delivery_retries = Counter("moderator_delivery_retries_total", "Verdicts or dead letters sent again after a delivery failure.", registry=r)
        self.poll_errors = Counter("moderator_poll_errors_total", "Errors raised while polling the input topics.", registry=r)
        self.producer_renewals = Counter(
            "moderator_producer_renewals_total",
            "Kafka producers replaced because they entered a fatal state "
            "(kafka-python's idempotent producer does on a record the broker refuses as too large).",
            registry=r,
        )
        self.unreadable_records = Counter(
            "moderator_unreadable_records_total",
            "Input offsets skipped because the Kafka client could not parse their records (each range also gets a dead letter with reason unreadable_record).",
            registry=r,
        )
        self.policy_stale = Gauge(
            "moderator_policy_stale",
            "1 while the policy file on disk differs from the policy being served (its last reload failed; the old policy keeps serving), by policy role.",
            ["role"],
            registry=r,
        )

        self.hash_matches = Counter(
            "moderator_hash_matches_total",
            "Acknowledged verdicts decided or overridden by a hash bank, by bank, bank kind (deny, allow) and hash type of the deciding match.",
            ["bank", "kind", "hash_type"],
            registry=r,
        )
        self.hash_lookup_seconds = Histogram(
            "moderator_hash_lookup_seconds", "Time to look one message's hashes up in every bank.", buckets=LOOKUP_BUCKETS, registry=r
        )
        self.decoder_restarts = Counter(
            "moderator_decoder_restarts_total",
            "Decode processes replaced because one crashed or hung on an image (media.decode_mode: processes), by reason (crashed, timeout).",
            ["reason"],
            registry=r,
        )
        self.result_cache = Counter("moderator_result_cache_total", "Result cache lookups, by result (hit, miss).", ["result"], registry=r)
        self.result_cache_entries = Gauge("moderator_result_cache_entries", "Entries in the result cache.", registry=r)
        self.encodes_saved = Counter(
            "moderator_encodes_saved_total",
            "Messages decided without the encoder, by why: a result cache hit, or a deny hash match that blocks.",
            ["reason"],
            registry=r,
        )
        self.bank_entries = Gauge(
            "moderator_bank_entries", "Hashes in the banks being served, by bank, kind and hash type.", ["bank", "kind", "hash_type"], registry=r
        )
        self.bank_reloads = Counter(
            "moderator_bank_reloads_total", "Hash bank directory reloads (a file changed, or SIGHUP), by result.", ["result"], registry=r
        )
        self.banks_stale = Gauge(
            "moderator_banks_stale",
            "1 while the bank files on disk differ from the banks being served (the last reload failed; the old banks keep serving).",
            registry=r,
        )

    def banks_loaded(self, banks) -> None:
        """Banks (``hashing.banks.Banks``) went into service: at start, or a reload succeeded."""
        self.bank_entries.clear()
        for b in banks.banks:
            self.bank_entries.labels(b.name, b.kind, "sha256").set(b.sha256)
            self.bank_entries.labels(b.name, b.kind, "pdq").set(b.pdq)
            for hash_type in HASH_TYPES:
                self.hash_matches.labels(b.name, b.kind, hash_type)
        self.banks_stale.set(0)

    def banks_reloaded(self, banks) -> None:
        self.banks_loaded(banks)
        self.bank_reloads.labels("ok").inc()

    def banks_reload_failed(self) -> None:
        self.bank_reloads.labels("failed").inc()
        self.banks_stale.set(1)

    def policy_reloaded(self, role: str, policy) -> None:
        """A reload of the ``role`` policy succeeded (``ReloadReporter`` for policy.reload)."""
        if role == "primary":
            self.add_categories(policy.categories)
            self.policy_info.info({"name": policy.name, "version": policy.version, "label": policy.label})
        self.policy_reloads.labels(role, "ok").inc()
        self.policy_stale.labels(role).set(0)

    def policy_reload_failed(self, role: str) -> None:
        """A reload of the ``role`` policy failed; the old one keeps serving."""
        self.policy_reloads.labels(role, "failed").inc()
        self.policy_stale.labels(role).set(1)

    def observe_frames(self, frames) -> None:
        """Frame counts of one scored message (``media.frames.FrameSet``; None for a still)."""
        total = frames.total if frames is not None else 1
        scored = frames.scored if frames is not None else 1
        self.frames_per_message.observe(total)
        self.frames.labels("scored").inc(scored)
        if total > scored:
            self.frames.labels("skipped").inc(total - scored)

    def add_categories(self, categories: Iterable[str]) -> None:
        for c in categories:
            for a in ACTIONS[1:]:
                self.category_actions.labels(c, a)

    def start(self, *, topics: Iterable[str], categories: Iterable[str], backend: str) -> None:
        """Pre-create the expected label combinations so dashboards show zero, not nothing."""
        self.build_info.info({"version": __version__})
        for t in topics:
            self.messages_consumed.labels(t)
        for d in ACTIONS:
            self.verdicts.labels(d)
        self.add_categories(categories)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for s in STAGES:
            self.stage_seconds.labels(s)
        for result in ("ok", "failed"):
            self.commits.labels(result)
            for role in ("primary", "shadow"):
                self.policy_reloads.labels(role, result)
        for role in ("primary", "shadow"):
            self.policy_stale.labels(role).set(0)
        for d in ACTIONS:
            self.shadow_decisions.labels(d)
        for result in ("agree", "disagree"):
            self.shadow_agreement.labels(result)
        self.backend_errors.labels(backend)
        for result in ("scored", "skipped"):
            self.frames.labels(result)
        for why in ("crashed", "timeout"):
            self.decoder_restarts.labels(why)
        for rule in ("review", "reject", "sample"):
            self.frame_overflows.labels(rule)
        for result in ("hit", "miss"):
            self.result_cache.labels(result)
        for reason in ENCODES_SAVED:
            self.encodes_saved.labels(reason)
        for result in ("ok", "failed"):
            self.bank_reloads.labels(result)
