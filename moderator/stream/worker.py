"""The stream worker: a consumer-group member that turns input messages into verdicts.

Threads:

- the **main loop** (the caller of :meth:`Worker.run`) owns the consumer: poll, track offsets,
  hand each record to the decode pool, form micro-batches, commit, pause/resume;
- the **decode pool** parses messages and decodes/preprocesses images;
- the **encode thread** waits for a batch's decodes, encodes and scores it, and sends verdicts
  and dead letters;
- the producer's I/O thread acknowledges offsets as the broker acknowledges sends.

The run loop stays short: poll, dispatch, batch, commit, flow control.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from moderator.errors import BackendError, MessageError
from moderator.processing import Prepared, Processor
from moderator.settings import Settings
from moderator.stream.batching import Batcher, Item
from moderator.stream.checkpoint import Checkpoint
from moderator.stream.clients import make_consumer, make_producer
from moderator.stream.delivery import Delivery, Outgoing
from moderator.stream.rebalance import make_listener
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from moderator.wire.deadletter import dead_letter_headers
from moderator.wire.input import ImageRequest, Source, message_id, parse_message
from moderator.wire.verdict import Timings, build_verdict

log = logging.getLogger(__name__)

_STOP = object()


class Worker:
    def __init__(self, settings: Settings, processor: Processor, metrics: Metrics, health: Health) -> None:
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.health = health
        self._info = processor.encoder.info()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._fatal: BaseException | None = None
        self._checkpoint = Checkpoint()
        self._batcher = Batcher(settings.batch.max_size, settings.batch.max_wait_ms / 1e3)
        self._batches: queue.Queue = queue.Queue()
        self._pool = ThreadPoolExecutor(settings.media.decode_workers, thread_name_prefix="decode")
        self._paused = False
        self._consumer = None
        self._delivery: Delivery | None = None
        self._encode_thread = threading.Thread(target=self._encode_loop, name="encode", daemon=True)
        self._last_commit = 0.0
        self._broker_errors = {"poll": False, "commit": False}
        self._last_lag = 0.0
        self.health.set("broker", False)
        self.health.set("backend", processor.encoder.ready())

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop fetching, drain, commit and return (signal-safe)."""
        self._stop.set()

    def fail(self, exc: BaseException) -> None:
        """Record an unrecoverable error; the run loop stops and the process exits 1."""
        self._fatal = exc
        self._stop.set()

    def abandon(self) -> None:
        """Stop waiting for in-flight work (a second signal); it is redelivered after restart."""
        self._stop.set()
        self._abandon.set()

    def run(self) -> int:
        """Run until :meth:`stop`; returns the process exit code (0 after a clean drain)."""
        ks = self.settings.kafka
        self._consumer = self._connect(lambda: make_consumer(ks, self.settings.batch.max_size))
        if self._consumer is None:
            return 0
        producer = self._connect(lambda: make_producer(ks))
        if producer is None:
            self._consumer.close(autocommit=False)
            return 0
        self._delivery = Delivery(producer, self._checkpoint, self.metrics)
        self._consumer.subscribe(list(ks.input_topics), listener=make_listener(self))
        # "broker" stays false until a poll has found the group coordinator (see _broker_ok):
        # setting it here made /readyz flap true, false, true while the first poll looked it up.
        self._encode_thread.start()
        log.info("consuming %s as group %s", ",".join(ks.input_topics), ks.group_id)
        try:
            while not self._stop.is_set() and self._fatal is None:
                self._poll_once()
        except Exception as exc:
            self._fatal = exc
            log.exception("worker failed: %s", exc)
        finally:
            self._shutdown()
        return 1 if self._fatal is not None else 0

    def _connect(self, factory):
        """Create a client, retrying while the broker is unreachable (the service waits, not exits)."""
        from kafka.errors import KafkaError

        delay = 0.5
        while not self._stop.is_set():
            try:
                return factory()
            except KafkaError as exc:
                log.warning("cannot reach Kafka at %s (%s); retrying in %.1fs", self.settings.kafka.bootstrap_servers, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None

    # --- main loop --------------------------------------------------------------------------

    def _poll_once(self) -> None:
        from kafka.errors import KafkaError

        due = self._batcher.due_in()
        timeout_ms = 100 if due is None else int(min(100.0, due * 1e3))
        try:
            records = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.batch.max_size)
        except KafkaError as exc:
            self.metrics.poll_errors.inc()
            self._broker_errors["poll"] = True
            log.warning("poll failed (%s: %s); retrying", type(exc).__name__, exc)
            self._stop.wait(0.5)
            records = {}
        else:
            self._broker_errors["poll"] = False
        for tp, messages in records.items():
            self.metrics.messages_consumed.labels(tp.topic).inc(len(messages))
            for m in messages:
                self._dispatch(m)
        if self._batcher.due_in() == 0.0:
            self._batches.put(self._batcher.take())
        self._maybe_commit()
        self._flow_control()
        self._measure_lag()
        self.health.set("broker", self._broker_ok())

    def _measure_lag(self) -> None:
        """End offset minus committed offset per assigned partition, every ``lag_interval_ms``."""
        interval = self.settings.kafka.lag_interval_ms / 1e3
        now = time.monotonic()
        if not interval or now - self._last_lag < interval:
            return
        self._last_lag = now
        from kafka.errors import KafkaError

        assignment = list(self._consumer.assignment())
        if not assignment:
            return
        try:
            ends = self._consumer.end_offsets(assignment, timeout_ms=5_000)
            ours = self._checkpoint.committed_offsets()
            for tp, end in ends.items():
                base = ours.get((tp.topic, tp.partition))
                if base is None:  # nothing committed by this worker yet: the group's last commit
                    base = self._consumer.committed(tp, timeout_ms=5_000) or 0
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - base))
        except KafkaError as exc:
            log.debug("lag measurement failed: %s", exc)

    def _broker_ok(self) -> bool:
        """Ready as far as Kafka goes: the last poll and commit succeeded and the group
        coordinator is known (kafka-python exposes the latter only on its coordinator object)."""
        if any(self._broker_errors.values()):
            return False
        coordinator = getattr(self._consumer, "_coordinator", None)
        try:
            return coordinator is None or not coordinator.coordinator_unknown()
        except Exception:  # an internal API that moved must not break readiness
            return True

    def _dispatch(self, m) -> None:
        token = self._checkpoint.track(m.topic, m.partition, m.offset)
        if token is None:
            return  # revoked after this poll returned it: the partition's new owner processes it
        source = Source(m.topic, m.partition, m.offset, m.timestamp if m.timestamp and m.timestamp > 0 else None)
        headers = list(m.headers or [])
        work = self._pool.submit(self._prepare, source, m.value, headers)
        item = Item(source, m.key, m.value, headers, token, time.perf_counter(), work)
        batch = self._batcher.add(item)
        if batch:
            self._batches.put(batch)

    def _prepare(self, source: Source, value: bytes | None, headers) -> tuple[ImageRequest | None, Prepared]:
        try:
            request = parse_message(source, value, headers)
        except MessageError as exc:
            return None, Prepared(None, exc, 0.0)
        return request, self.processor.prepare(request.image)

    def _maybe_commit(self, force: bool = False, partitions=None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.kafka.commit_interval_ms / 1e3:
            return
        self._last_commit = now
        from kafka.errors import KafkaError

        try:
            done = self._checkpoint.commit(self._commit_offsets, partitions)
        except KafkaError as exc:
            self.metrics.commits.labels("failed").inc()
            self._broker_errors["commit"] = True
            log.warning("offset commit failed (%s: %s); will retry", type(exc).__name__, exc)
            return
        self._broker_errors["commit"] = False
        if done:
            self.metrics.commits.labels("ok").inc()

    def _commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self._consumer.commit(
            {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()},
            timeout_ms=self.settings.kafka.request_timeout_ms,
        )

    def _flow_control(self) -> None:
        in_flight = self._checkpoint.in_flight()
        self.metrics.in_flight.set(in_flight)
        limit = self.settings.batch.max_in_flight
        if not self._paused and in_flight >= limit:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
            self.metrics.partition_pauses.inc()
            log.debug("paused %d partitions: %d messages in flight", len(self._consumer.assignment()), in_flight)
        elif self._paused and in_flight <= limit * self.settings.batch.resume_at:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
        self.metrics.paused_partitions.set(len(self._consumer.paused()))

    # --- rebalance ----------------------------------------------------------------------------
    # kafka-python 3 calls these on its I/O thread, where blocking consumer calls are refused:
    # waiting here is fine (acknowledgements come from the producer's own thread), committing
    # must be asynchronous (the request is queued ahead of the rejoin on the coordinator's
    # connection, so the broker applies it under the old generation).

    def on_revoked(self, revoked, lost: bool = False) -> None:
        tps = [(tp.topic, tp.partition) for tp in revoked]
        if not lost:
            if not self._checkpoint.wait_drained(tps, self.settings.kafka.revoke_timeout_ms / 1e3):
                log.warning("partitions revoked with %d messages in flight; they will be redelivered", self._checkpoint.in_flight(tps))
            due = self._checkpoint.due(tps)
            if due:
                from kafka.structs import OffsetAndMetadata, TopicPartition

                offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in due.items()}
                self._consumer.commit_async(offsets, callback=self._revoke_commit_done)
        self._checkpoint.revoke(tps)
        for t, p in tps:
            try:
                self.metrics.consumer_lag.remove(t, str(p))
            except KeyError:
                pass  # never measured
        log.info("partitions %s: %s", "lost" if lost else "revoked", ", ".join(f"{t}[{p}]" for t, p in tps) or "none")

    def _revoke_commit_done(self, offsets, response) -> None:
        if isinstance(response, Exception):
            self.metrics.commits.labels("failed").inc()
            log.warning("commit of revoked partitions failed (%s); their messages will be redelivered", response)
        else:
            self.metrics.commits.labels("ok").inc()

    def on_assigned(self, assigned) -> None:
        tps = [(tp.topic, tp.partition) for tp in assigned]
        self._checkpoint.assign(tps)
        self.metrics.assigned_partitions.set(len(tps))
        if self._paused and assigned:
            self._consumer.pause(*assigned)
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in tps) or "none")

    # --- encode thread ------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            batch = self._batches.get()
            if batch is _STOP:
                return
            try:
                self._process(batch)
            except Exception as exc:  # a bug here must stop the service loudly, not hang it
                log.exception("encode thread failed: %s", exc)
                self.fail(exc)
                return

    def _process(self, batch: list[Item]) -> None:
        ks = self.settings.kafka
        good: list[tuple[Item, ImageRequest, Prepared]] = []
        for item in batch:
            if item.token.closed:
                continue  # revoked: the partition's new owner processes it
            request, prepared = item.work.result()
            self.metrics.stage_seconds.labels("decode").observe(prepared.decode_ms / 1e3)
            if prepared.error is not None:
                self._dead_letter(item, request, prepared.error)
            else:
                good.append((item, request, prepared))
        if not good:
            return
        encode_start = time.perf_counter()
        result = self._score_with_retry([p.pixels for _, _, p in good])
        if result is None:
            return  # abandoned at shutdown: left unacknowledged, so uncommitted and redelivered
        self.metrics.batch_size.observe(len(good))
        self.metrics.stage_seconds.labels("encode").observe(result.encode_ms / 1e3)
        self.metrics.stage_seconds.labels("score").observe(result.score_ms / 1e3)
        shadows = result.shadow_decisions or [None] * len(good)
        for (item, request, prepared), decision, shadow in zip(good, result.decisions, shadows):
            queue_ms = (encode_start - item.polled_at) * 1e3
            self.metrics.stage_seconds.labels("queue").observe(queue_ms / 1e3)
            timings = Timings(
                decode_ms=round(prepared.decode_ms, 3), queue_ms=round(queue_ms, 3), encode_ms=round(result.encode_ms, 3),
                score_ms=round(result.score_ms, 3), batch_size=len(good),
            )
            verdict = build_verdict(request, decision, self._info, result.policy, timings,
                                    None if shadow is None else (result.shadow, shadow))
            self._delivery.send(Outgoing(
                ks.verdict_topic, verdict_key(item), verdict.model_dump_json().encode(),
                [("content-type", b"application/json"), ("moderation-id", request.id.encode())],
                item.token, item.source.offset, on_acked=self._verdict_acked(item, decision, shadow),
            ))

    def _verdict_acked(self, item: Item, decision, shadow):
        def acked() -> None:
            self.metrics.verdicts.labels(decision.decision).inc()
            if shadow is not None:
                self.metrics.shadow_decisions.labels(shadow.decision).inc()
                self.metrics.shadow_agreement.labels("agree" if shadow.decision == decision.decision else "disagree").inc()
            for c in decision.categories:
                if c.fired:
                    self.metrics.category_actions.labels(c.name, c.action).inc()
            self._observe_end_to_end(item)

        return acked

    def _observe_end_to_end(self, item: Item) -> None:
        if item.source.timestamp_ms:
            self.metrics.stage_seconds.labels("end_to_end").observe(max(0.0, time.time() - item.source.timestamp_ms / 1e3))

    def _dead_letter(self, item: Item, request: ImageRequest | None, error: MessageError) -> None:
        mid = request.id if request is not None else message_id(item.source, item.headers)
        src = item.source
        log.info(
            "dead letter %s[%d] offset=%d id=%s: %s: %s", src.topic, src.partition, src.offset, mid, error.reason, error,
            extra={"topic": item.source.topic, "partition": item.source.partition, "offset": item.source.offset, "id": mid, "reason": error.reason},
        )

        def acked() -> None:
            self.metrics.dead_letters.labels(error.reason).inc()
            self._observe_end_to_end(item)

        self._delivery.send(Outgoing(
            self.settings.kafka.dead_letter_topic, item.key, item.value or b"",
            dead_letter_headers(item.headers, item.source, mid, error), item.token, item.source.offset, on_acked=acked,
        ))

    def _score_with_retry(self, pixels):
        es = self.settings.encoder
        delay = es.retry_initial_ms / 1e3
        while True:
            try:
                result = self.processor.score_batch(pixels)
                self.health.set("backend", True)
                return result
            except BackendError as exc:
                self.metrics.backend_errors.labels(self._info.backend).inc()
                self.health.set("backend", False)
                log.warning("encoder failed (%s); retrying batch of %d in %.1fs", exc, len(pixels), delay)
                if self._abandon.wait(delay):
                    return None
                delay = min(delay * 2, es.retry_max_ms / 1e3)

    # --- shutdown -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """1. stop fetching; 2. hand over the partial batch; 3. wait for in-flight work to be
        acknowledged (bounded); 4. flush the producer; 5. commit; 6. leave the group."""
        timeout = self.settings.shutdown_timeout_s
        deadline = time.monotonic() + timeout
        consumer = self._consumer
        try:
            consumer.pause(*consumer.assignment())
        except Exception as exc:  # best effort: we stop polling anyway
            log.debug("pause at shutdown failed: %s", exc)
        if self._batcher.due_in() is not None:
            self._batches.put(self._batcher.take())
        self._batches.put(_STOP)
        if self._fatal is None and not self._checkpoint.wait_drained(None, timeout):
            log.warning("shutdown timeout: %d messages in flight will be redelivered", self._checkpoint.in_flight())
        self._abandon.set()
        if self._encode_thread.is_alive():
            self._encode_thread.join(max(0.1, deadline - time.monotonic()))
        self._delivery.flush(timeout=max(1.0, deadline - time.monotonic()))
        self._maybe_commit(force=True)
        committed = {f"{t}[{p}]": o for (t, p), o in self._checkpoint.committed_offsets().items()}
        log.info("stopped; committed offsets %s", committed)
        self._delivery.close()
        try:
            consumer.close(autocommit=False)
        except Exception as exc:  # leaving the group is best effort; the session times out anyway
            log.warning("consumer close failed: %s", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.health.set("broker", False)

def verdict_key(item: Item) -> bytes:
    """The input key, so verdicts keep the input's per-key order; keyless input is keyed by its
    source partition, so its verdicts keep that partition's order."""
    if item.key is not None:
        return item.key
    return f"{item.source.topic}/{item.source.partition}".encode()
