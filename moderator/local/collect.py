"""Read the verdict and dead-letter topics in the background (demo, benchmark, tests)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Output:
    kind: str  # "verdict" | "dead_letter"
    id: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    received_at: float  # time.monotonic()

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)


class OutputCollector:
    def __init__(self, bootstrap: str, verdict_topic: str, dead_letter_topic: str) -> None:
        self.bootstrap = bootstrap
        self.topics = {verdict_topic: "verdict", dead_letter_topic: "dead_letter"}
        self.outputs: list[Output] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="output-collector", daemon=True)

    def start(self) -> OutputCollector:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        parts = [TopicPartition(t, p) for t in self.topics for p in sorted(self._consumer.partitions_for_topic(t) or ())]
        self._consumer.assign(parts)
        self._consumer.seek_to_beginning(*parts)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=200)
            now = time.monotonic()
            new = []
            for tp, records in batch.items():
                kind = self.topics[tp.topic]
                for r in records:
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (r.headers or [])}
                    if kind == "verdict":
                        mid = json.loads(r.value)["id"]
                    else:
                        mid = headers.get("moderator-input-id", "")
                    new.append(Output(kind, mid, r.partition, r.offset, r.key, r.value, headers, now))
            if new:
                with self._lock:
                    self.outputs.extend(new)
                    self._lock.notify_all()
        self._consumer.close()

    def snapshot(self) -> list[Output]:
        with self._lock:
            return list(self.outputs)

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        """Block until every id has at least one output; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: ids <= {o.id for o in self.outputs}, timeout=timeout)

    def wait_count(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.outputs) >= count, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
