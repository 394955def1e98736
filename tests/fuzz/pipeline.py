"""The worker's whole per-message path in one process, without a broker: parse and decode (the
worker's fault boundary), encode and score with the real tiny model, build and serialise the
verdict or the dead letter. What would be sent is recorded, checked the way the producer would
check it (header keys encoded as UTF-8, values bytes), and returned.

Shared by the hostile-input unit tests, the hypothesis properties and the atheris fuzz targets.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from moderator.media.decode import DecodeLimits
from moderator.policy import compile_policy, load_policy
from moderator.processing import Processor
from moderator.settings import load_settings
from moderator.stream.batching import Item
from moderator.stream.checkpoint import Checkpoint
from moderator.stream.delivery import Outgoing
from moderator.stream.outputs import Outputs
from moderator.stream.scoring import ScoringLoop
from moderator.stream.worker import Worker
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics
from moderator.wire.input import MessageLimits, Source

TOPIC = "in"


class RecordingDelivery:
    """Stands where :class:`~moderator.stream.delivery.Delivery` stands; checks what the producer would."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def send(self, msg: Outgoing) -> None:
        for key, value in msg.headers:
            key.encode("utf-8")  # kafka-python encodes header keys as UTF-8; a surrogate would raise here
            assert value is None or isinstance(value, bytes), f"header {key!r} value is {type(value).__name__}"
        assert isinstance(msg.value, bytes)
        self.sent.append(msg)


@dataclass(frozen=True)
class Output:
    kind: str  # "verdict" | "dead_letter"
    offset: int
    headers: dict[str, str]
    value: bytes

    @property
    def reason(self) -> str | None:
        return self.headers.get("moderator-error-reason")

    def verdict(self) -> dict:
        return json.loads(self.value.decode("utf-8"), parse_constant=_no_constants)


def _no_constants(name: str):
    raise ValueError(f"{name} in a verdict is not JSON")


class Pipeline:
    def __init__(self, encoder, policy_path, limits: MessageLimits | None = None, decode: DecodeLimits | None = None) -> None:
        self.limits = limits or MessageLimits()
        settings = load_settings(encoder={"retry_initial_ms": 1, "retry_max_ms": 2})
        processor = Processor(encoder, compile_policy(load_policy(policy_path), encoder), decode or DecodeLimits())
        metrics, health = Metrics(CollectorRegistry()), Health()
        self.fatal: list[BaseException] = []
        self.worker = Worker(settings, processor, metrics, health, self.limits)
        self.delivery = RecordingDelivery()
        self.scoring = ScoringLoop(settings, processor, metrics, health, threading.Event(), self.fatal.append)
        self.scoring.outputs = Outputs(settings.kafka, self.delivery, metrics, processor.encoder.info(), self.limits)
        self.checkpoint = Checkpoint()
        self.checkpoint.assign([(TOPIC, 0)])
        self.offset = 0

    def run(self, messages: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> list[Output]:
        """Process ``(key, value, headers)`` messages as one micro-batch; one output each, in order."""
        items = []
        for key, value, headers in messages:
            source = Source(TOPIC, 0, self.offset, None)
            token = self.checkpoint.track(TOPIC, 0, self.offset)
            work: Future = Future()
            work.set_result(self.worker._prepare(source, value, headers))
            items.append(Item(source, key, value, headers, token, time.perf_counter(), work))
            self.offset += 1
        self.delivery.sent.clear()
        self.scoring.process(items)
        assert not self.fatal, f"the encode path failed outside every message's boundary: {self.fatal}"
        outputs = [
            Output(
                "dead_letter" if m.topic.endswith("dlq") else "verdict",
                m.offset,
                {k: (v or b"").decode("utf-8", "strict" if k.startswith("moderator-") else "replace") for k, v in m.headers},
                m.value,
            )
            for m in self.delivery.sent
        ]
        return sorted(outputs, key=lambda o: o.offset)

    def one(self, value: bytes | None, headers=(), key: bytes | None = None) -> Output:
        [out] = self.run([(key, value, list(headers))])
        return out
