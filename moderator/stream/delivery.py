"""Sending verdicts and dead letters, and acknowledging their offsets once the broker has them.

The producer is idempotent with ``acks=all``. Each send carries the offset token it completes;
the broker's acknowledgement (on the producer's I/O thread) acknowledges the offset in the
checkpoint. A send the producer gives up on (delivery timeout, broker gone) is sent again by a
retry thread with backoff, until it succeeds or its partition is revoked: its offset is never
committed meanwhile, so nothing is lost.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from moderator.stream.checkpoint import Checkpoint, PartitionOffsets
from moderator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    token: PartitionOffsets
    offset: int
    on_acked: Callable[[], None] | None = None
    attempts: int = 0
    sent_at: float = field(default=0.0)


class Delivery:
    def __init__(self, producer, checkpoint: Checkpoint, metrics: Metrics, backoff_ms: int = 500, backoff_max_ms: int = 10_000) -> None:
        self._producer = producer
        self._checkpoint = checkpoint
        self._metrics = metrics
        self._backoff = backoff_ms / 1e3
        self._backoff_max = backoff_max_ms / 1e3
        self._retries: list[tuple[float, int, Outgoing]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._retry_loop, name="delivery-retry", daemon=True)
        self._thread.start()

    def send(self, msg: Outgoing) -> None:
        """Send now; failures (immediate or later) are retried, never raised."""
        if msg.token.closed:
            return  # partition revoked: its new owner re-processes the message
        msg.attempts += 1
        msg.sent_at = time.perf_counter()
        try:
            future = self._producer.send(msg.topic, key=msg.key, value=msg.value, headers=msg.headers)
        except Exception as exc:  # KafkaTimeoutError (no metadata), BufferError, closed producer, ...
            self._failed(msg, exc)
            return
        future.add_callback(lambda _md: self._acked(msg))
        future.add_errback(lambda exc: self._failed(msg, exc))

    def _acked(self, msg: Outgoing) -> None:
        self._metrics.stage_seconds.labels("produce").observe(time.perf_counter() - msg.sent_at)
        self._checkpoint.ack(msg.token, msg.offset)
        if msg.on_acked is not None:
            msg.on_acked()

    def _failed(self, msg: Outgoing, exc: BaseException) -> None:
        delay = min(self._backoff * 2 ** (msg.attempts - 1), self._backoff_max)
        log.warning(
            "delivery to %s for %s[%d] offset=%d failed (%s: %s); sending again in %.1fs",
            msg.topic, msg.token.topic, msg.token.partition, msg.offset, type(exc).__name__, exc, delay,
            extra={"topic": msg.token.topic, "partition": msg.token.partition, "offset": msg.offset},
        )
        self._metrics.delivery_retries.inc()
        with self._cv:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), msg))
            self._cv.notify()

    def _retry_loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._retries or self._retries[0][0] > time.monotonic()):
                    timeout = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, msg = heapq.heappop(self._retries)
            self.send(msg)

    def flush(self, timeout: float) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)
        self._producer.close(timeout=timeout)
