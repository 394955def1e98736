"""Sending verdicts and dead letters, and acknowledging their offsets once the broker has them.

The producer is idempotent with ``acks=all``. Each send carries the offset token it completes;
the broker's acknowledgement (on the producer's I/O thread) acknowledges the offset in the
checkpoint. A send the producer gives up on (delivery timeout, broker gone) is sent again by a
retry thread with backoff, until it succeeds or its partition is revoked: its offset is never
committed meanwhile, so nothing is lost.

A send refused because the record is too large (by the producer's ``max_request_size`` or the
topic's ``max.message.bytes``) is about that message, not the broker: retrying could never
succeed and would stall the partition, so its ``fallback`` (a smaller record for the same
offset) is sent instead, once.

kafka-python's idempotent producer (3.0.12) treats the broker's "message too large" as fatal:
it aborts every pending send and refuses all later ones. So before each re-send the retry thread
checks the producer and, if it is in that state, replaces it with a new one (``renew``); the
aborted sends come back through their error callbacks and are sent again. Nothing is lost (their
offsets were never acknowledged); some may be written twice (at-least-once).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from moderator.retry import Backoff
from moderator.stream.checkpoint import Checkpoint, PartitionOffsets
from moderator.stream.clients import producer_failed
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
    fallback: Callable[[BaseException], Outgoing] | None = None
    partition: int | None = None  # None: the producer's partitioner, by key
    too_large: int = 0  # refusals for size so far
    attempts: int = 0
    sent_at: float = field(default=0.0)


class Delivery:
    def __init__(self, producer, checkpoint: Checkpoint, metrics: Metrics, backoff: Backoff | None = None, renew: Callable[[], object] | None = None) -> None:
        self._producer = producer
        self._renew = renew
        self._checkpoint = checkpoint
        self._metrics = metrics
        self._backoff = backoff if backoff is not None else Backoff(0.5, 10.0)
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
            future = self._producer.send(msg.topic, key=msg.key, value=msg.value, headers=msg.headers, partition=msg.partition)
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
        if msg.fallback is not None and too_large(exc):
            msg.too_large += 1
            if msg.too_large >= 2:  # once may be another record's: the fatal state aborts every pending send
                log.warning(
                    "%s for %s[%d] offset=%d is too large (%s: %s); sending its smaller form",
                    msg.topic,
                    msg.token.topic,
                    msg.token.partition,
                    msg.offset,
                    type(exc).__name__,
                    exc,
                    extra={"topic": msg.token.topic, "partition": msg.token.partition, "offset": msg.offset},
                )
                self._schedule(msg.fallback(exc), 0.0)
                return
        delay = self._backoff.delay(msg.attempts - 1)
        log.warning(
            "delivery to %s for %s[%d] offset=%d failed (%s: %s); sending again in %.1fs",
            msg.topic,
            msg.token.topic,
            msg.token.partition,
            msg.offset,
            type(exc).__name__,
            exc,
            delay,
            extra={"topic": msg.token.topic, "partition": msg.token.partition, "offset": msg.offset},
        )
        self._metrics.delivery_retries.inc()
        self._schedule(msg, delay)

    def _schedule(self, msg: Outgoing, delay: float) -> None:
        with self._cv:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), msg))
            self._cv.notify()

    def _renew_if_failed(self) -> None:
        """Replace a producer that will never send again (see the module docstring)."""
        if self._renew is None or not producer_failed(self._producer):
            return
        old = self._producer
        log.warning("the Kafka producer is in a fatal state; replacing it and re-sending what it dropped")
        self._metrics.producer_renewals.inc()
        try:
            self._producer = self._renew()
        except Exception as exc:  # broker unreachable right now: keep the old one, try again on the next re-send
            log.warning("could not create a new producer (%s: %s); will try again", type(exc).__name__, exc)
            return
        try:
            old.close(timeout=5)
        except Exception as exc:  # its pending sends were aborted already and come back as failures
            log.debug("closing the failed producer: %s", exc)

    def _retry_loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._retries or self._retries[0][0] > time.monotonic()):
                    timeout = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, msg = heapq.heappop(self._retries)
            self._renew_if_failed()
            self.send(msg)

    def flush(self, timeout: float) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)
        self._producer.close(timeout=timeout)


def too_large(exc: BaseException) -> bool:
    """A refusal for the record's size: the producer's (raised by ``send``) or the broker's."""
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError))
