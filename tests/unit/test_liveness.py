"""/healthz means progress (issue: production Kafka): the poll loop and the encode thread beat a
watchdog; a thread wedged with work pending fails liveness, a slow backend being retried does not."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future

from PIL import Image
from prometheus_client import CollectorRegistry

from moderator.errors import BackendError
from moderator.media.decode import DecodeLimits
from moderator.policy import compile_policy, load_policy
from moderator.processing import Processor
from moderator.settings import load_settings
from moderator.stream.batching import Item
from moderator.stream.checkpoint import Checkpoint
from moderator.stream.scoring import ScoringLoop
from moderator.telemetry.health import Health
from moderator.telemetry.http import TelemetryServer
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import MessageLimits, Source, parse_message
from tests.conftest import TINY_POLICY


def test_a_watchdog_is_stale_only_while_work_is_pending():
    health = Health()
    pending = {"value": True}
    health.watch("loop", 0.05, pending=lambda: pending["value"])
    assert health.alive()
    time.sleep(0.1)
    assert health.liveness()["loop"] >= 0.05 and not health.alive()
    pending["value"] = False
    assert health.alive(), "an idle thread that does not beat is not wedged"
    pending["value"] = True
    health.beat("loop")
    assert health.alive()
    health.watch("off", 0.0)
    time.sleep(0.01)
    assert health.liveness()["off"] is None, "timeout 0 disables the watchdog"


class Blocking:
    """The tiny encoder, whose image calls block until released (a wedged backend call), or fail
    with BackendError while ``failing`` (a backend that answers, with errors)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.release = threading.Event()
        self.entered = threading.Event()
        self.failing = False

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_images(self, pixels):
        self.entered.set()
        if self.failing:
            raise BackendError("connection refused")
        self.release.wait(30)
        return self._encoder.encode_images(pixels)


class Outputs:
    def __init__(self) -> None:
        self.verdicts = []

    def verdict(self, item, request, outcome, timings, cached=False):
        self.verdicts.append(request.id)

    def dead_letter(self, item, mid, error):
        raise AssertionError(f"no dead letter expected: {error}")


def _item(processor: Processor, checkpoint: Checkpoint, offset: int) -> Item:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (offset * 40 % 256, 0, 0)).save(buf, "PNG")
    source = Source("t", 0, offset, None)
    request = parse_message(source, buf.getvalue(), [("moderation-id", f"m{offset}".encode())], MessageLimits())
    work: Future = Future()
    work.set_result((request, processor.prepare(request.image)))
    return Item(source, None, buf.getvalue(), [], checkpoint.track("t", 0, offset), time.perf_counter(), work)


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_wedged_encoder_call_fails_healthz_and_a_failing_backend_does_not(tiny_encoder):
    encoder = Blocking(tiny_encoder)
    settings = load_settings(telemetry={"liveness_timeout_s": 0.3}, encoder={"retry_initial_ms": 20, "retry_max_ms": 50})
    processor = Processor(encoder, compile_policy(load_policy(TINY_POLICY), tiny_encoder), DecodeLimits())
    reg = CollectorRegistry()
    metrics, health = Metrics(reg), Health()
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    server = TelemetryServer("127.0.0.1", 0, reg, health)
    server.start()
    checkpoint = Checkpoint()
    checkpoint.assign([("t", 0)])
    loop = ScoringLoop(settings, processor, metrics, health, threading.Event(), on_fatal=lambda exc: None)
    outputs = Outputs()
    loop.start(outputs)
    try:
        time.sleep(0.5)
        assert _get(server.port, "/healthz")[0] == 200, "an idle encode thread is alive"
        loop.put([_item(processor, checkpoint, 0)])
        assert encoder.entered.wait(10)
        time.sleep(0.6)
        status, body = _get(server.port, "/healthz")
        assert status == 503 and body["status"] == "stalled" and body["stalled_seconds"]["encode"] >= 0.3
        encoder.release.set()
        deadline = time.monotonic() + 10
        while outputs.verdicts != ["m0"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _get(server.port, "/healthz")[0] == 200, "progress again: alive"
        encoder.failing = True  # a backend that fails fast is retried: the thread beats, it is not wedged
        loop.put([_item(processor, checkpoint, 1)])
        time.sleep(1.0)
        assert _get(server.port, "/healthz")[0] == 200
        assert reg.get_sample_value("moderator_backend_errors_total", {"backend": "onnx"}) >= 5
        encoder.failing = False
    finally:
        encoder.release.set()
        loop.finish()
        loop.join(10)
        server.stop()


def test_a_wedged_poll_fails_healthz(tiny_encoder):
    from moderator.stream.worker import Worker

    settings = load_settings(telemetry={"liveness_timeout_s": 0.3})
    processor = Processor(tiny_encoder, compile_policy(load_policy(TINY_POLICY), tiny_encoder), DecodeLimits())
    health = Health()
    worker = Worker(settings, processor, Metrics(CollectorRegistry()), health, MessageLimits())
    release = threading.Event()

    class Consumer:
        def poll(self, timeout_ms, max_records):
            release.wait(30)  # a client call that never returns
            return {}

    worker._consumer = Consumer()
    time.sleep(0.5)
    assert health.alive(), "not polling yet (connecting, waiting for topics): not a wedge"
    worker._polling = True
    health.beat("poll")

    def one_poll() -> None:
        try:
            worker._poll_once()
        except AttributeError:  # after the poll returns, the rest of the loop needs a real consumer
            pass

    t = threading.Thread(target=one_poll, daemon=True)
    t.start()
    time.sleep(0.6)
    assert health.liveness()["poll"] is not None and not health.alive()
    release.set()
    t.join(10)
    health.beat("poll")
    assert health.alive()
    worker.stop()
    assert health.liveness()["poll"] is None, "a stopping worker's poll loop is not expected to beat"


def test_a_batch_of_slow_decodes_is_progress_not_a_wedge(tiny_encoder):
    """Crafted images that each take most of their decode budget: the batch waits for them longer
    than the liveness timeout in all, but every decode that finishes is progress. A restart here
    would redeliver the same images: a crash loop bought with a handful of messages."""
    settings = load_settings(telemetry={"liveness_timeout_s": 0.5})
    processor = Processor(tiny_encoder, compile_policy(load_policy(TINY_POLICY), tiny_encoder), DecodeLimits())
    metrics, health = Metrics(CollectorRegistry()), Health()
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    checkpoint = Checkpoint()
    checkpoint.assign([("t", 0)])
    loop = ScoringLoop(settings, processor, metrics, health, threading.Event(), on_fatal=lambda exc: None)
    outputs = Outputs()
    loop.start(outputs)
    ready = [_item(processor, checkpoint, i) for i in range(6)]
    slow = []
    for item in ready:  # the same items, their decodes finishing 0.3 s apart (1.8 s in all)
        work: Future = Future()
        slow.append(Item(item.source, item.key, item.value, item.headers, item.token, item.polled_at, work))

    def finish() -> None:
        for item, done in zip(ready, slow):
            time.sleep(0.3)
            done.work.set_result(item.work.result())

    finisher = threading.Thread(target=finish)
    try:
        loop.put(slow)
        finisher.start()
        stale = []
        while finisher.is_alive():
            stale.append(not health.alive())
            time.sleep(0.05)
        assert not any(stale), "every finished decode beat the watchdog"
    finally:
        finisher.join(10)
        loop.finish()
        loop.join(10)
    assert outputs.verdicts == [f"m{i}" for i in range(6)]
