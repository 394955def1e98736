"""The encode thread's encoder retry: failures are retried with backoff, counted, and shown in
readiness; the batch is scored once the backend answers again."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CollectorRegistry

from moderator.errors import BackendError
from moderator.media.decode import DecodeLimits
from moderator.policy import compile_policy, load_policy
from moderator.processing import Processor
from moderator.settings import load_settings
from moderator.stream.scoring import ScoringLoop
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from tests.conftest import TINY_POLICY


class FailingFirst:
    """The real tiny encoder, whose first ``failures`` image calls raise BackendError (a backend outage)."""

    def __init__(self, encoder, failures: int) -> None:
        self._encoder, self.failures, self.readiness_seen = encoder, failures, []
        self.health: Health | None = None

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_images(self, pixels):
        if self.health is not None:
            self.readiness_seen.append(self.health.checks()["backend"])
        if self.failures:
            self.failures -= 1
            raise BackendError("connection refused")
        return self._encoder.encode_images(pixels)


def _worker(encoder, **batch):
    settings = load_settings(encoder={"retry_initial_ms": 1, "retry_max_ms": 4})
    processor = Processor(encoder, compile_policy(load_policy(TINY_POLICY), encoder), DecodeLimits())
    reg = CollectorRegistry()
    metrics, health = Metrics(reg), Health()
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    health.probe("backend", encoder.ready)
    abandon = threading.Event()
    loop = ScoringLoop(settings, processor, metrics, health, abandon, on_fatal=lambda exc: None)
    loop.abandon = abandon.set
    return loop, reg, health


def test_backend_failures_are_retried_then_the_batch_is_scored(tiny_encoder):
    flaky = FailingFirst(tiny_encoder, failures=2)
    worker, reg, health = _worker(flaky)
    flaky.health = health
    pixels = [np.zeros((64, 64, 3), np.uint8)] * 3
    result = worker.score_with_retry(pixels)
    assert result is not None and len(result.decisions) == 3
    assert reg.get_sample_value("moderator_backend_errors_total", {"backend": "onnx"}) == 2
    assert flaky.readiness_seen == [True, False, False], "readiness drops while the backend fails"
    assert health.checks()["backend"] is True, "and recovers with the first success"


def test_abandon_stops_retrying_and_leaves_the_batch_unscored(tiny_encoder):
    worker, reg, _ = _worker(FailingFirst(tiny_encoder, failures=10**9))
    result: list = []
    t = threading.Thread(target=lambda: result.append(worker.score_with_retry([np.zeros((64, 64, 3), np.uint8)])))
    t.start()
    worker.abandon()
    t.join(10)
    assert not t.is_alive() and result == [None], "an abandoned batch is left unacknowledged (redelivered later)"
    assert reg.get_sample_value("moderator_backend_errors_total", {"backend": "onnx"}) >= 1
