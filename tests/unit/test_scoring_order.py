"""Verdicts leave in the batch's order even when some images are decided without the encoder
(a cache hit): the verdicts of one key stay in order."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import Future

from PIL import Image
from prometheus_client import CollectorRegistry

from moderator.hashing.cache import ResultCache
from moderator.media.decode import DecodeLimits
from moderator.policy import compile_policy, load_policy
from moderator.processing import Processor
from moderator.settings import load_settings
from moderator.stream.batching import Item
from moderator.stream.checkpoint import Checkpoint
from moderator.stream.scoring import ScoringLoop
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import MessageLimits, Source, parse_message
from tests.conftest import TINY_POLICY
from tests.unit.test_liveness import Outputs


def png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def item(processor: Processor, checkpoint: Checkpoint, offset: int, data: bytes) -> Item:
    source = Source("t", 0, offset, None)
    request = parse_message(source, data, [("moderation-id", f"m{offset}".encode())], MessageLimits())
    work: Future = Future()
    work.set_result((request, processor.prepare(request.image)))
    return Item(source, b"same-key", data, [], checkpoint.track("t", 0, offset), time.perf_counter(), work)


def test_cached_and_encoded_verdicts_keep_the_batch_order(tiny_encoder):
    processor = Processor(tiny_encoder, compile_policy(load_policy(TINY_POLICY), tiny_encoder), DecodeLimits(), cache=ResultCache(100))
    metrics = Metrics(CollectorRegistry())
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    loop = ScoringLoop(load_settings(), processor, metrics, Health(), threading.Event(), on_fatal=lambda exc: None)
    loop.outputs = outputs = Outputs()
    checkpoint = Checkpoint()
    checkpoint.assign([("t", 0)])
    loop.process([item(processor, checkpoint, 0, png(10))])  # decided once: a repost of it is cached
    batch = [item(processor, checkpoint, 1, png(20)), item(processor, checkpoint, 2, png(10)), item(processor, checkpoint, 3, png(30))]
    assert [i.work.result()[1].cached is not None for i in batch] == [False, True, False]
    loop.process(batch)
    assert outputs.verdicts == ["m0", "m1", "m2", "m3"], "the cached m2 waits for the encoded m1 before it"
