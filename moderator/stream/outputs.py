"""What the worker writes for each message: its verdict or its dead letter, built so that one of
them is always written.

- A verdict is built and serialised inside the per-message fault boundary; if that fails, the
  message gets a dead letter instead.
- A dead letter whose original value would not fit (``kafka.max_request_size``, or the dead-letter
  topic's ``max.message.bytes`` read at start) is sent without its value, with a
  ``moderator-value-omitted`` header saying why. If the broker still refuses a verdict or a dead
  letter as too large (the topic's limit was lowered since), the smaller form is sent instead
  (a verdict falls back to a dead letter, a dead letter to one without its value). A message
  that is too large never stalls its partition in retries.
- Records the client could not read get a dead letter naming the unreadable offsets, no value.

Partitioning (balanced output): when an output topic has as many partitions as the input topic,
each output goes to its input's partition number (per-partition order, and the input's balance);
otherwise verdicts are keyed by the input key or, for keyless input, by the message id, and
keyless dead letters (their key stays the input's: none) are placed by the message id's hash.
"""

from __future__ import annotations

import logging
import time

from moderator.boundary import contain
from moderator.encoders.base import EncoderInfo
from moderator.errors import MessageError, ProcessingFailed, UnreadableRecord
from moderator.processing import Outcome
from moderator.settings import KafkaSettings
from moderator.stream.batching import Item
from moderator.stream.checkpoint import PartitionOffsets
from moderator.stream.delivery import Delivery, Outgoing
from moderator.stream.unreadable import UnreadableRange
from moderator.telemetry.metrics import Metrics
from moderator.wire.deadletter import PREFIX, VALUE_OMITTED_HEADER, dead_letter_headers
from moderator.wire.input import ImageRequest, MessageLimits, Source, message_id
from moderator.wire.verdict import Timings, build_verdict

log = logging.getLogger(__name__)

# Room left in a produce request for the record's framing beside key, value and headers.
REQUEST_OVERHEAD_BYTES = 1024


class Outputs:
    def __init__(
        self,
        kafka: KafkaSettings,
        delivery: Delivery,
        metrics: Metrics,
        info: EncoderInfo,
        limits: MessageLimits,
        topic_limits: dict[str, int] | None = None,
        partitions: dict[str, int] | None = None,
    ) -> None:
        self._partitions = partitions or {}
        self._kafka = kafka
        self._max_dead_letter = min(kafka.max_request_size, (topic_limits or {}).get(kafka.dead_letter_topic, kafka.max_request_size))
        self._delivery = delivery
        self._metrics = metrics
        self._info = info
        self._limits = limits

    # --- verdicts -----------------------------------------------------------------------------

    def verdict(self, item: Item, request: ImageRequest, outcome: Outcome, timings: Timings, cached: bool = False) -> None:
        """Send the verdict of one decided message (its dead letter if the verdict cannot be built)."""
        payload = contain("building the verdict", lambda: build_verdict(request, outcome, self._info, timings, cached).model_dump_json().encode())
        if isinstance(payload, MessageError):
            self.dead_letter(item, request.id, payload)
            return

        def refused(exc: BaseException) -> Outgoing:
            error = ProcessingFailed(f"the verdict ({len(payload)} bytes) was refused by the broker: {type(exc).__name__}: {exc}")
            return self._dead_letter_message(item, request.id, error)

        self._delivery.send(
            Outgoing(
                self._kafka.verdict_topic,
                verdict_key(item, request.id),
                payload,
                [("content-type", b"application/json"), ("moderation-id", request.id.encode())],
                item.token,
                item.source.offset,
                on_acked=self._verdict_acked(item, outcome),
                fallback=refused,
                partition=self.partition_for(item, self._kafka.verdict_topic),
            )
        )

    def partition_for(self, item: Item, topic: str, mid: str | None = None) -> int | None:
        """The input's partition number when ``topic`` has as many partitions as the input topic;
        else, given ``mid`` (a keyless dead letter), the message id's hash; else None (by key)."""
        outputs = self._partitions.get(topic)
        # Counts are read at start; partitions added to the input since can be past the output's.
        if outputs and self._partitions.get(item.source.topic) == outputs and item.source.partition < outputs:
            return item.source.partition
        if outputs and mid is not None and item.key is None:
            from kafka.partitioner.default import murmur2

            return (murmur2(mid.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF) % outputs
        return None

    def _verdict_acked(self, item: Item, outcome: Outcome):
        def acked() -> None:
            decision, shadow = outcome.decision, outcome.shadow_decision
            self._metrics.verdicts.labels(decision).inc()
            if shadow is not None:
                self._metrics.shadow_decisions.labels(shadow).inc()
                self._metrics.shadow_agreement.labels("agree" if shadow == decision else "disagree").inc()
            for c in outcome.classifier.categories if outcome.classifier is not None else ():
                if c.fired:
                    self._metrics.category_actions.labels(c.name, c.action).inc()
            if outcome.known is not None:
                m = outcome.known.match
                self._metrics.hash_matches.labels(m.bank, m.kind, m.hash_type).inc()
            self._observe_end_to_end(item.source)

        return acked

    # --- dead letters -------------------------------------------------------------------------

    def dead_letter(self, item: Item, mid: str | None, error: MessageError) -> None:
        """Send the original record to the dead-letter topic with ``error``; never raises."""
        self._delivery.send(self._dead_letter_message(item, mid, error))

    def _dead_letter_message(self, item: Item, mid: str | None, error: MessageError) -> Outgoing:
        if mid is None:
            mid = message_id(item.source, item.headers, None, self._limits)
        src = item.source
        log.info(
            "dead letter %s[%d] offset=%d id=%s: %s: %s",
            src.topic,
            src.partition,
            src.offset,
            mid,
            error.reason,
            error,
            extra={"topic": src.topic, "partition": src.partition, "offset": src.offset, "id": mid, "reason": error.reason},
        )
        headers = dead_letter_headers(item.headers, src, mid, error)
        value = item.value or b""
        size = len(value) + len(item.key or b"") + sum(len(k) + len(v or b"") for k, v in headers) + REQUEST_OVERHEAD_BYTES
        if size > self._max_dead_letter:
            return self._without_value(
                item,
                mid,
                error,
                f"the value ({len(value)} bytes) does not fit in a dead letter "
                f"({self._max_dead_letter} bytes: the topic's max.message.bytes or kafka.max_request_size)",
            )

        def refused(exc: BaseException) -> Outgoing:
            return self._without_value(item, mid, error, f"the broker refused the dead letter with its value ({len(value)} bytes): {type(exc).__name__}")

        return Outgoing(
            self._kafka.dead_letter_topic,
            item.key,
            value,
            headers,
            item.token,
            src.offset,
            on_acked=self._dead_letter_acked(error, src),
            fallback=refused,
            partition=self.partition_for(item, self._kafka.dead_letter_topic, mid),
        )

    def _without_value(self, item: Item, mid: str, error: MessageError, why: str) -> Outgoing:
        headers = dead_letter_headers(item.headers, item.source, mid, error, {VALUE_OMITTED_HEADER[len(PREFIX) :]: why})
        if sum(len(k) + len(v or b"") for k, v in headers) + REQUEST_OVERHEAD_BYTES > self._max_dead_letter:
            headers = dead_letter_headers(None, item.source, mid, error, {VALUE_OMITTED_HEADER[len(PREFIX) :]: why + "; original headers omitted too"})
        return Outgoing(
            self._kafka.dead_letter_topic,
            None,
            b"",
            headers,
            item.token,
            item.source.offset,
            on_acked=self._dead_letter_acked(error, item.source),
            partition=self.partition_for(item, self._kafka.dead_letter_topic, mid),
        )

    def unreadable(self, token: PartitionOffsets, skipped: UnreadableRange) -> None:
        """One dead letter for offsets the client could not read; it completes the range's last offset."""
        source = Source(skipped.topic, skipped.partition, skipped.first, None)
        error = UnreadableRecord(f"offsets {skipped.first}..{skipped.last} could not be read by the Kafka client: {skipped.error}")
        log.warning(
            "unreadable records %s[%d] offsets %d..%d skipped: %s",
            skipped.topic,
            skipped.partition,
            skipped.first,
            skipped.last,
            skipped.error,
            extra={"topic": skipped.topic, "partition": skipped.partition, "offset": skipped.first, "reason": error.reason},
        )
        headers = dead_letter_headers(
            None,
            source,
            source.coordinates,
            error,
            {
                "source-offset-last": str(skipped.last),
                VALUE_OMITTED_HEADER[len(PREFIX) :]: "the record could not be read",
            },
        )
        outputs = self._partitions.get(self._kafka.dead_letter_topic)
        same = outputs is not None and self._partitions.get(skipped.topic) == outputs and skipped.partition < outputs
        self._delivery.send(
            Outgoing(
                self._kafka.dead_letter_topic,
                None,
                b"",
                headers,
                token,
                skipped.last,
                on_acked=self._dead_letter_acked(error, source),
                partition=skipped.partition if same else None,
            )
        )

    def _dead_letter_acked(self, error: MessageError, source: Source):
        def acked() -> None:
            self._metrics.dead_letters.labels(error.reason).inc()
            self._observe_end_to_end(source)

        return acked

    def _observe_end_to_end(self, source: Source) -> None:
        if source.timestamp_ms:
            self._metrics.stage_seconds.labels("end_to_end").observe(max(0.0, time.time() - source.timestamp_ms / 1e3))


def verdict_key(item: Item, mid: str) -> bytes:
    """The input key, so verdicts keep the input's per-key order; keyless input is keyed by its
    message id (so keyless verdicts spread over the partitions: keying them by source partition
    put half of them on one verdict partition)."""
    if item.key is not None:
        return item.key
    return mid.encode("utf-8", "surrogatepass")
