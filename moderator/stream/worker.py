"""The stream worker: a consumer-group member that turns input messages into verdicts.

Threads:

- the **main loop** (the caller of :meth:`Worker.run`) owns the consumer: poll, track offsets,
  hand each record to the decode pool, form micro-batches, commit, pause/resume;
- the **decode pool** parses messages and decodes/preprocesses images, each inside the
  per-message fault boundary (:mod:`moderator.boundary`);
- the **encode thread** (:mod:`moderator.stream.scoring`) waits for a batch's decodes, encodes and
  scores it, and sends verdicts and dead letters (:mod:`moderator.stream.outputs`);
- the producer's I/O thread acknowledges offsets as the broker acknowledges sends.

The run loop stays short: poll, dispatch, batch, commit, flow control. A record the Kafka client
cannot parse is skipped by offset and dead-lettered (:mod:`moderator.stream.unreadable`), so no
record can stall its partition.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from moderator.boundary import contain
from moderator.errors import MessageError
from moderator.processing import Prepared, Processor
from moderator.retry import Backoff, RetryStopped, retry
from moderator.settings import Settings
from moderator.stream.batching import Batcher, Item
from moderator.stream.checkpoint import Checkpoint, Committer
from moderator.stream.clients import kafka_offsets, make_consumer, make_producer, topic_message_limits
from moderator.stream.connect import quiet_connection_errors
from moderator.stream.delivery import Delivery
from moderator.stream.lag import LagMeter
from moderator.stream.outputs import Outputs
from moderator.stream.rebalance import make_listener
from moderator.stream.scoring import ScoringLoop
from moderator.stream.topics import wait_for_topics
from moderator.stream.unreadable import skip_unreadable
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import ImageRequest, MessageLimits, Source, parse_message

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings, processor: Processor, metrics: Metrics, health: Health, limits: MessageLimits | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.health = health
        self.limits = limits or MessageLimits()
        self._info = processor.encoder.info()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._fatal: BaseException | None = None
        self._checkpoint = Checkpoint()
        self._batcher = Batcher(settings.batch.micro_batch_size, settings.batch.max_wait_ms / 1e3)
        self._pool = ThreadPoolExecutor(settings.media.decode_workers, thread_name_prefix="decode")
        self._paused = False
        self._consumer: Any = None  # the KafkaConsumer, made in run()
        self._outputs: Any = None  # Outputs, made in run() once the producer is up
        self._delivery: Delivery | None = None
        self._scoring = ScoringLoop(settings, processor, metrics, health, self._abandon, self.fail)
        self._committer = Committer(self._checkpoint, settings.kafka.commit_interval_ms / 1e3, self._commit_sync, self._commit_async)
        self._lag = LagMeter(settings.kafka.lag_interval_ms / 1e3, metrics)
        self._broker_errors = {"poll": False, "commit": False}
        self.health.set("broker", False)
        self.health.set("backend", processor.encoder.ready())
        # Armed once polling starts: waiting for the broker or for topics at start is not a wedge.
        self._polling = False
        self.health.watch("poll", settings.telemetry.liveness_timeout_s, pending=lambda: self._polling and not self._stop.is_set())

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
        self._consumer = self._connect(lambda: make_consumer(ks, self.settings.batch.micro_batch_size))
        if self._consumer is None:
            return 0
        producer = self._connect(lambda: make_producer(ks))
        if producer is None:
            self._consumer.close(autocommit=False)
            return 0
        partitions = wait_for_topics(ks, self.health, self._stop, kafka_backoff(self.settings))
        if partitions is None:
            producer.close()
            self._consumer.close(autocommit=False)
            return 0
        self._delivery = Delivery(producer, self._checkpoint, self.metrics, kafka_backoff(self.settings), renew=lambda: make_producer(ks))
        sizes = topic_message_limits(ks, [ks.verdict_topic, ks.dead_letter_topic])
        self._outputs = Outputs(ks, self._delivery, self.metrics, self._info, self.limits, sizes, partitions)
        self._consumer.subscribe(
            list(ks.input_topics), listener=make_listener(self.on_revoked, lambda tps: self.on_revoked(tps, lost=True), self.on_assigned, self.fail)
        )
        # "broker" stays false until a poll has found the group coordinator (see _broker_ok):
        # setting it here made /readyz flap true, false, true while the first poll looked it up.
        self._scoring.start(self._outputs)
        log.info("consuming %s as group %s", ",".join(ks.input_topics), ks.group_id)
        self.health.beat("poll")
        self._polling = True
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

        ks = self.settings.kafka
        with quiet_connection_errors() as cause:

            def failed(exc: BaseException, _attempt: int, delay: float) -> None:
                why = cause() or f"{type(exc).__name__}: {exc}"
                self.health.note("broker", f"cannot connect: {why}")
                log.error("cannot connect to Kafka at %s (%s): %s; retrying in %.1fs", ks.bootstrap_servers, ks.security_protocol, why, delay)

            if self._stop.is_set():
                return None
            try:
                client = retry(factory, on=KafkaError, backoff=kafka_backoff(self.settings), stop=self._stop, on_failure=failed)
            except RetryStopped:
                return None
        self.health.note("broker", None)
        return client

    # --- main loop --------------------------------------------------------------------------

    def _poll_once(self) -> None:
        self.health.beat("poll")
        due = self._batcher.due_in()
        timeout_ms = 100 if due is None else int(min(100.0, due * 1e3))
        try:
            records = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.batch.micro_batch_size)
        except Exception as exc:  # a record the client cannot parse, or the broker
            records = {}
            if not skip_unreadable(exc, self._consumer, self._checkpoint, self._outputs, self.metrics):
                self.metrics.poll_errors.inc()
                self._broker_errors["poll"] = True
                log.warning("poll failed (%s: %s); retrying", type(exc).__name__, exc)
                self._stop.wait(0.5)
        else:
            self._broker_errors["poll"] = False
        for tp, messages in records.items():
            self.metrics.messages_consumed.labels(tp.topic).inc(len(messages))
            for m in messages:
                self._dispatch(m)
        if self._batcher.due_in() == 0.0:
            self._scoring.put(self._batcher.take())
        self._maybe_commit()
        self._flow_control()
        self._lag.maybe_measure(self._consumer, self._checkpoint)
        self.health.set("broker", self._broker_ok())

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
            self._scoring.put(batch)

    def _prepare(self, source: Source, value: bytes | None, headers) -> tuple[ImageRequest | None, Prepared]:
        """Parse and decode one message inside the fault boundary; never raises."""
        start = time.perf_counter()
        request = contain("parsing the message", lambda: parse_message(source, value, headers, self.limits))
        if isinstance(request, MessageError):
            return None, Prepared(None, request, (time.perf_counter() - start) * 1e3)
        prepared = contain("decoding the image", lambda: self.processor.prepare(request.image))
        if isinstance(prepared, MessageError):
            return request, Prepared(None, prepared, (time.perf_counter() - start) * 1e3)
        return request, prepared

    def _maybe_commit(self, force: bool = False) -> None:
        from kafka.errors import KafkaError

        try:
            done = self._committer.maybe_commit(force)
        except KafkaError as exc:
            self.metrics.commits.labels("failed").inc()
            self._broker_errors["commit"] = True
            log.warning("offset commit failed (%s: %s); will retry", type(exc).__name__, exc)
            return
        if done is not None:
            self._broker_errors["commit"] = False
        if done:
            self.metrics.commits.labels("ok").inc()

    def _commit_sync(self, offsets: dict[tuple[str, int], int]) -> None:
        self._consumer.commit(kafka_offsets(offsets), timeout_ms=self.settings.kafka.request_timeout_ms)

    def _commit_async(self, offsets: dict[tuple[str, int], int], done) -> None:
        self._consumer.commit_async(kafka_offsets(offsets), callback=lambda _o, response: done(response if isinstance(response, Exception) else None))

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

    # --- rebalance (kafka-python's I/O thread; see stream/rebalance.py and Committer.revoke) ------

    def on_revoked(self, tps: list[tuple[str, int]], lost: bool = False) -> None:
        if lost:
            self._committer.lose(tps)
        else:
            left = self._committer.revoke(tps, self.settings.kafka.revoke_timeout_ms / 1e3, self._revoke_commit_done)
            if left:
                log.warning("partitions revoked with %d messages in flight; they will be redelivered", left)
        self._lag.forget(tps)
        self._count_assigned()
        log.info("partitions %s: %s", "lost" if lost else "revoked", ", ".join(f"{t}[{p}]" for t, p in tps) or "none")

    def _count_assigned(self) -> None:
        self.metrics.assigned_partitions.set(self._checkpoint.assigned())

    def _revoke_commit_done(self, error: BaseException | None) -> None:
        if error is not None:
            self.metrics.commits.labels("failed").inc()
            log.warning("commit of revoked partitions failed (%s); their messages will be redelivered", error)
        else:
            self.metrics.commits.labels("ok").inc()

    def on_assigned(self, tps: list[tuple[str, int]]) -> None:
        from kafka.structs import TopicPartition

        self._checkpoint.assign(tps)  # cooperative rebalancing assigns incrementally: only the new ones
        self._count_assigned()
        if self._paused and tps:
            self._consumer.pause(*[TopicPartition(t, p) for t, p in tps])
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in tps) or "none")

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
            self._scoring.put(self._batcher.take())
        self._scoring.finish()
        if self._fatal is None and not self._checkpoint.wait_drained(None, timeout):
            log.warning("shutdown timeout: %d messages in flight will be redelivered", self._checkpoint.in_flight())
        self._abandon.set()
        self._scoring.join(max(0.1, deadline - time.monotonic()))
        delivery = self._delivery
        assert delivery is not None  # made in run() before the loop this stops
        delivery.flush(timeout=max(1.0, deadline - time.monotonic()))
        self._maybe_commit(force=True)
        committed = {f"{t}[{p}]": o for (t, p), o in self._checkpoint.committed_offsets().items()}
        log.info("stopped; committed offsets %s", committed)
        delivery.close()
        try:
            consumer.close(autocommit=False)
        except Exception as exc:  # leaving the group is best effort; the session times out anyway
            log.warning("consumer close failed: %s", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.health.set("broker", False)


def kafka_backoff(settings: Settings) -> Backoff:
    """Backoff for reconnecting to the broker and re-sending outputs (``kafka.retry_*``)."""
    return Backoff.from_ms(settings.kafka.retry_initial_ms, settings.kafka.retry_max_ms)
