"""Consumer lag per assigned partition: the end offset minus this group's committed offset."""

from __future__ import annotations

import logging
import time

from moderator.stream.checkpoint import Checkpoint
from moderator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class LagMeter:
    """Measures lag every ``interval_s`` (0 disables) with one ListOffsets request."""

    def __init__(self, interval_s: float, metrics: Metrics) -> None:
        self.interval_s = interval_s
        self.metrics = metrics
        self._last = 0.0

    def maybe_measure(self, consumer, checkpoint: Checkpoint) -> None:
        now = time.monotonic()
        if not self.interval_s or now - self._last < self.interval_s:
            return
        self._last = now
        from kafka.errors import KafkaError

        assignment = list(consumer.assignment())
        if not assignment:
            return
        try:
            ends = consumer.end_offsets(assignment, timeout_ms=5_000)
            ours = checkpoint.committed_offsets()
            for tp, end in ends.items():
                base = ours.get((tp.topic, tp.partition))
                if base is None:  # nothing committed by this worker yet: the group's last commit
                    base = consumer.committed(tp, timeout_ms=5_000) or 0
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - base))
        except KafkaError as exc:
            log.debug("lag measurement failed: %s", exc)

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        for t, p in partitions:
            try:
                self.metrics.consumer_lag.remove(t, str(p))
            except KeyError:
                pass  # never measured
