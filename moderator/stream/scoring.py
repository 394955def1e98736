"""The encode thread: waits for a micro-batch's decodes, encodes and scores it, and hands each
message's verdict or dead letter to :class:`~moderator.stream.outputs.Outputs`.

Messages whose outcome is already known skip the encoder: a result cache hit (an identical image
decided before with the same model, policies and banks) and a deny hash match that blocks.

Failures are sorted by whose they are:

- a message whose parse or decode failed is dead-lettered (its error came back from the fault
  boundary in the decode pool);
- :class:`~moderator.errors.BackendError` is the encoder's: the batch is retried with backoff,
  readiness drops meanwhile, and nothing after it is acknowledged, so nothing is committed past it;
- any other exception from encoding or scoring a batch might be caused by one of its images: the
  batch is split in halves and each half scored again, until the images that fail on their own
  are found and dead-lettered (at most ``2 log2(n)`` extra calls); the rest are scored normally.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from moderator.boundary import unexpected
from moderator.errors import BackendError
from moderator.processing import BatchResult, Outcome, Prepared, Processor
from moderator.retry import Backoff, RetryStopped, retry
from moderator.settings import Settings
from moderator.stream.batching import Item
from moderator.stream.outputs import Outputs
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import ImageRequest
from moderator.wire.verdict import Timings

log = logging.getLogger(__name__)

_STOP = object()

Scorable = tuple[Item, ImageRequest | None, Prepared]


class ScoringLoop:
    def __init__(
        self, settings: Settings, processor: Processor, metrics: Metrics, health: Health, abandon: threading.Event, on_fatal: Callable[[BaseException], None]
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.health = health
        self._abandon = abandon
        self._on_fatal = on_fatal
        self._backend = processor.encoder.info().backend
        self._batches: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="encode", daemon=True)
        self._busy = False
        self.outputs: Outputs | None = None
        health.watch("encode", settings.telemetry.liveness_timeout_s, pending=lambda: self._busy or not self._batches.empty())

    def start(self, outputs: Outputs) -> None:
        self.outputs = outputs
        self._thread.start()

    @property
    def _outputs(self) -> Outputs:
        if self.outputs is None:
            raise RuntimeError("the scoring loop has not been started")
        return self.outputs

    def put(self, batch: list[Item]) -> None:
        self._batches.put(batch)

    def finish(self) -> None:
        """No more batches: the thread ends after the ones queued."""
        self._batches.put(_STOP)

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self.health.beat("encode")
            batch = self._batches.get()
            if batch is _STOP:
                return
            self._busy = True
            self.health.beat("encode")
            try:
                self.process(batch)
            except Exception as exc:  # a bug outside every message's boundary: stop loudly, never hang
                log.exception("encode thread failed: %s", exc)
                self._on_fatal(exc)
                return
            finally:
                self._busy = False

    def process(self, batch: list[Item]) -> None:
        """Dead letters for failed decodes at once; verdicts in the batch's order (the verdicts of
        one key stay in order, whether an image was encoded or decided without the encoder)."""
        assert self.outputs is not None
        good: list[Scorable] = []
        ready: list[Scorable | None] = []  # in batch order; None marks the next encoded one
        decided: dict[int, tuple[Outcome, Timings]] = {}
        for item in batch:
            if item.token.closed:
                continue  # revoked: the partition's new owner processes it
            request, prepared = item.work.result()  # never raises: the decode pool's work is contained
            # A decode done is progress: a batch of slow (bounded) decodes is not a wedged thread.
            self.health.beat("encode")
            self.metrics.stage_seconds.labels("decode").observe(prepared.decode_ms / 1e3)
            if prepared.error is not None:
                self._outputs.dead_letter(item, request.id if request is not None else None, prepared.error)
                continue
            self._observe_known(prepared)
            outcome = self.processor.decided(prepared)
            if outcome is None:
                good.append((item, request, prepared))
                ready.append(None)
                continue
            self.metrics.encodes_saved.labels("cache" if prepared.cached is not None else "hash_match").inc()
            decided[len(ready)] = (
                outcome,
                Timings(
                    decode_ms=round(prepared.decode_ms, 3),
                    queue_ms=round((time.perf_counter() - item.polled_at) * 1e3, 3),
                    encode_ms=0.0,
                    score_ms=0.0,
                    batch_size=0,
                ),
            )
            ready.append((item, request, prepared))
        scored = iter(self._score(good) if good else [])
        for i, entry in enumerate(ready):
            if entry is None:
                done = next(scored)
                if done is not None:  # None: abandoned at shutdown, or dead-lettered by the bisection
                    self._outputs.verdict(*done)
            else:
                item, request, prepared = entry
                outcome, timings = decided[i]
                assert request is not None  # parsed: only a message that failed to parse has none, and it is a dead letter
                self._outputs.verdict(item, request, outcome, timings, cached=prepared.cached is not None)

    def _observe_known(self, prepared: Prepared) -> None:
        if self.processor.cache is not None:
            self.metrics.result_cache.labels("hit" if prepared.cached is not None else "miss").inc()
            self.metrics.result_cache_entries.set(len(self.processor.cache))
        if prepared.cached is None and self.processor.banks is not None:
            self.metrics.hash_lookup_seconds.observe(prepared.lookup_ms / 1e3)

    def _score(self, good: list[Scorable]) -> list[tuple | None]:
        """One entry per message of ``good``, in order: the arguments of its verdict, or None (its
        dead letter is sent here, or the batch was abandoned at shutdown and is redelivered)."""
        encode_start = time.perf_counter()
        try:
            overflow = [bool(p.frames and p.frames.overflow) for _, _, p in good]
            result = self.score_with_retry([p.pixels for _, _, p in good], overflow, [p.frames.indices if p.frames else None for _, _, p in good])
        except Exception as exc:
            if len(good) == 1:
                item, request, _ = good[0]
                self._outputs.dead_letter(item, request.id if request is not None else None, unexpected("encoding and scoring the image", exc))
                return [None]
            log.warning("a batch of %d failed to encode or score (%s: %s); splitting it to find the image that fails", len(good), type(exc).__name__, exc)
            half = len(good) // 2
            return self._score(good[:half]) + self._score(good[half:])
        if result is None:
            return [None for _ in good]  # abandoned at shutdown: left unacknowledged, so uncommitted and redelivered
        self.metrics.batch_size.observe(sum(len(p.pixels) for _, _, p in good if p.pixels is not None))
        for _, _, p in good:
            self.metrics.observe_frames(p.frames)
        self.metrics.stage_seconds.labels("encode").observe(result.encode_ms / 1e3)
        self.metrics.stage_seconds.labels("score").observe(result.score_ms / 1e3)
        return self._verdicts(good, result, self.processor.outcomes([p for _, _, p in good], result), encode_start)

    def _verdicts(self, good: list[Scorable], result: BatchResult, outcomes: list[Outcome], encode_start: float) -> list[tuple | None]:
        out: list[tuple | None] = []
        for (item, request, prepared), outcome in zip(good, outcomes):
            queue_ms = (encode_start - item.polled_at) * 1e3
            self.metrics.stage_seconds.labels("queue").observe(queue_ms / 1e3)
            timings = Timings(
                decode_ms=round(prepared.decode_ms, 3),
                queue_ms=round(queue_ms, 3),
                encode_ms=round(result.encode_ms, 3),
                score_ms=round(result.score_ms, 3),
                batch_size=len(good),
            )
            if outcome.classifier is not None and outcome.classifier.overflow:
                self.metrics.frame_overflows.labels(outcome.classifier.overflow).inc()
            out.append((item, request, outcome, timings))
        return out

    def score_with_retry(self, pixels, overflow: list[bool] | None = None, groups: Sequence[Sequence[int] | None] | None = None) -> BatchResult | None:
        """Score a batch, retrying backend failures with backoff; None when abandoned at shutdown.

        Raises:
            Exception: anything but a BackendError, for :meth:`_score` to isolate.
        """
        es = self.settings.encoder

        def attempt() -> BatchResult:
            self.health.beat("encode")  # waiting out a failing backend is progress; a call that never returns is not
            try:
                return self.processor.score_batch(pixels, overflow, groups)
            except BackendError:  # counted and shown on every failure, the last one too
                self.metrics.backend_errors.labels(self._backend).inc()
                self.health.set("backend", False)
                raise

        def failed(exc: BaseException, _attempt: int, delay: float) -> None:
            log.warning("encoder failed (%s); retrying batch of %d in %.1fs", exc, len(pixels), delay)

        try:
            result = retry(attempt, on=BackendError, backoff=Backoff.from_ms(es.retry_initial_ms, es.retry_max_ms), stop=self._abandon, on_failure=failed)
        except RetryStopped:
            return None
        self.health.set("backend", True)
        return result
