"""The one object that wires settings into a running service."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry

from moderator.encoders import Encoder, build_encoder
from moderator.errors import BackendError, BackendUnavailable, SettingsError
from moderator.hashing.banks import load_banks
from moderator.hashing.cache import ResultCache
from moderator.hashing.reload import BankReloader
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits
from moderator.media.heap import keep_heap
from moderator.policy.cache import EmbeddingCache
from moderator.policy.compile import compile_policy
from moderator.policy.loader import load_policy
from moderator.policy.reload import PolicyReloader
from moderator.processing import KnownContentOptions, Processor
from moderator.reloading import Reloader
from moderator.retry import Backoff, RetryStopped, retry
from moderator.settings import Settings
from moderator.stream.worker import Worker
from moderator.telemetry.health import SERVICE_CHECKS, Health
from moderator.telemetry.http import TelemetryServer
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import MessageLimits

log = logging.getLogger(__name__)

T = TypeVar("T")


def decode_limits(settings: Settings) -> DecodeLimits:
    m = settings.media
    return DecodeLimits(max_bytes=m.max_bytes, max_pixels=m.max_pixels, max_side=m.max_side, background=m.background, second_background=m.second_background)


def frame_limits(settings: Settings) -> FrameLimits:
    m = settings.media
    return FrameLimits(
        max_frames=m.max_frames,
        max_decoded_frames=m.max_decoded_frames,
        max_total_pixels=m.max_total_pixels,
        max_decode_seconds=m.max_decode_seconds,
        change_threshold=m.frame_change_threshold,
        max_video_seconds=m.max_video_seconds,
    )


def message_limits(settings: Settings) -> MessageLimits:
    return MessageLimits(**settings.message.model_dump())


def wait_for_backend(settings: Settings, step: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
    """Run ``step``, retrying with backoff while a remote backend is unreachable (BackendError),
    for at most ``encoder.startup_timeout_s``.

    Raises:
        BackendUnavailable: still unreachable at the deadline (or asked to stop meanwhile).
    """
    es = settings.encoder

    def failed(exc: BaseException, _attempt: int, delay: float) -> None:
        log.warning("%s: %s; retrying in %.1fs", what, exc, delay)

    try:
        return retry(
            step, on=BackendError, backoff=Backoff.from_ms(es.retry_initial_ms, es.retry_max_ms), stop=stop, timeout_s=es.startup_timeout_s, on_failure=failed
        )
    except RetryStopped as exc:
        raise BackendUnavailable(
            f"{what}: the {es.backend} backend did not answer within {es.startup_timeout_s:.0f}s (MODERATOR_ENCODER__STARTUP_TIMEOUT_S): {exc.last}"
        ) from exc.last


def build_processor(
    settings: Settings,
    make_encoder: Callable[[], Encoder] | None = None,
    stop: threading.Event | None = None,
) -> tuple[Processor, EmbeddingCache]:
    """Build the encoder and connect it, then compile the policy and the shadow policy.

    ``make_encoder`` constructs an encoder without network calls (default: ``build_encoder``);
    its ``connect()`` is retried while a remote backend is unreachable, for at most
    ``encoder.startup_timeout_s``; the in-process one needs no network.

    Raises:
        ModelError, PolicyError, BankError, BackendUnavailable: the service cannot start.
    """
    encoder = (make_encoder or (lambda: build_encoder(settings.encoder)))()
    wait_for_backend(settings, encoder.connect, "connecting to the encoder", stop)
    cache = EmbeddingCache(settings.policy.cache_dir, encoder.info().model_checksum)

    def compile_all():
        policy = compile_policy(load_policy(settings.policy.path), encoder, cache)
        shadow = compile_policy(load_policy(settings.policy.shadow_path), encoder, cache) if settings.policy.shadow_path else None
        return policy, shadow

    policy, shadow = wait_for_backend(settings, compile_all, "encoding the policy prompts", stop)
    hs = settings.hashing
    banks = load_banks(hs.banks_dir, hs.max_bank_entries) if hs.banks_dir is not None else None
    processor = Processor(
        encoder,
        policy,
        decode_limits(settings),
        shadow,
        frame_limits(settings),
        banks,
        KnownContentOptions(hs.pdq, hs.pdq_quality_floor, hs.pdq_turns, hs.pdq_trim_borders),
        ResultCache(hs.cache_size) if hs.cache_size else None,
        settings.media.fast_decode,
        settings.media.crops,
        settings.media.max_crops,
    )
    return processor, cache


def start_exit_deadline(seconds: float) -> threading.Thread:
    """Make sure the process ends within ``seconds`` of a stop signal, whatever it is waiting on.

    The drain is bounded by ``shutdown_timeout_s`` step by step, but a call into a client library
    can still block; past the deadline the process exits with code 1. Nothing is lost: offsets are
    committed only for acknowledged outputs, so whatever was in flight is redelivered.
    """

    def expire() -> None:
        time.sleep(seconds)
        log.error("still running %.0fs after the stop signal; exiting now (in-flight messages will be redelivered)", seconds)
        logging.shutdown()
        os._exit(1)

    t = threading.Thread(target=expire, name="exit-deadline", daemon=True)
    t.start()
    return t


class Application:
    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        make_encoder: Callable[[], Encoder] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(registry)
        self.health = Health(required=SERVICE_CHECKS)
        self._make_encoder = make_encoder  # hosts that build the encoder themselves (the Ray pipeline)
        self._stopping = threading.Event()
        self._worker: Worker | None = None

    def stop(self) -> None:
        """Drain and stop, as SIGTERM does (for hosts without signals, e.g. a Serve replica)."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()

    def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT, drain, and return the exit code.

        Raises:
            StartupError: model, policy or settings are unusable.
        """
        s = self.settings
        try:
            telemetry = TelemetryServer(s.telemetry.host, s.telemetry.port, self.metrics.registry, self.health)
        except OSError as exc:
            raise SettingsError(f"cannot listen on {s.telemetry.host}:{s.telemetry.port} for /metrics ({exc.strerror}); set MODERATOR_TELEMETRY__PORT") from exc
        telemetry.start()
        processor: Processor | None = None
        try:
            processor, cache = build_processor(s, self._make_encoder, self._stopping)
            if s.media.decode_mode == "processes":
                processor.decode_in_processes(s.media.decode_workers, lambda why: self.metrics.decoder_restarts.labels(why).inc(), s.media.decode_memory_mb)
                log.info("decoding in %d processes", s.media.decode_workers)
            else:
                keep_heap()  # the decode threads' buffers (moderator/media/heap.py)
            info = processor.encoder.info()
            self.health.set("model", True)
            self.health.set("policy", True)
            self.health.probe("backend", processor.encoder.ready)
            self.metrics.start(topics=s.kafka.input_topics, categories=processor.policy.categories, backend=info.backend)
            self.metrics.model_info.info(
                {
                    "name": info.model_name,
                    "checksum": info.model_checksum,
                    "precision": info.precision,
                    "backend": info.backend,
                    "providers": ",".join(info.providers),
                }
            )
            self.metrics.policy_info.info({"name": processor.policy.name, "version": processor.policy.version, "label": processor.policy.label})
            log.info(
                "model %s (%s, %s on %s), policy %s@%s, non-square frames scored as %s (media.crops %s)",
                info.model_name,
                info.model_checksum,
                info.precision,
                ",".join(info.providers),
                processor.policy.name,
                processor.policy.version,
                f"up to {processor.preprocessor.max_crops} squares" if processor.preprocessor.cover else "the centre square",
                s.media.crops,
            )
            reloaders: list[Reloader] = [PolicyReloader(s.policy.path, processor, self.metrics, s.policy.reload_interval_s, "primary", cache)]
            if s.policy.shadow_path:
                reloaders.append(PolicyReloader(s.policy.shadow_path, processor, self.metrics, s.policy.reload_interval_s, "shadow", cache))
                shadow = processor.shadow
                assert shadow is not None  # build_processor compiled it from shadow_path
                log.info("shadow policy %s@%s scored beside the acting one", shadow.name, shadow.version)
            if processor.banks is not None:
                banks = processor.banks
                self.metrics.banks_loaded(banks)
                log.info(
                    "hash banks %s: %d banks, %d hashes (%s)",
                    banks.version,
                    len(banks.banks),
                    banks.entries,
                    ", ".join(f"{b.name}: {b.kind}" for b in banks.banks) or "none yet",
                )
                assert s.hashing.banks_dir is not None  # banks are loaded only from a banks_dir
                reloaders.append(BankReloader(s.hashing.banks_dir, processor, self.metrics, s.hashing.reload_interval_s, s.hashing.max_bank_entries))
            for r in reloaders:
                r.start()
            worker = self._worker = Worker(s, processor, self.metrics, self.health, message_limits(s))
            if self._stopping.is_set():
                worker.stop()
            self._install_signals(worker, reloaders)
            code = worker.run()
            for r in reloaders:
                r.stop()
            processor.encoder.close()
            return code
        finally:
            if processor is not None:
                processor.close()
            telemetry.stop()

    def _install_signals(self, worker: Worker, reloaders: list[Reloader]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        count = {"n": 0}
        bound = self.settings.shutdown_timeout_s + self.settings.shutdown_grace_s

        def handler(signum: int, _frame: object) -> None:
            count["n"] += 1
            if count["n"] == 1:
                log.info("received %s: stopping fetches, draining in-flight work", signal.Signals(signum).name)
                start_exit_deadline(bound)
                worker.stop()
            else:
                log.warning("received %s again: abandoning in-flight work (it will be redelivered)", signal.Signals(signum).name)
                worker.abandon()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

        def reload_now(_signum, _frame) -> None:
            for r in reloaders:
                r.request()

        signal.signal(signal.SIGHUP, reload_now)
