"""Micro-batching of polled records by size and by the age of the oldest record."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

from moderator.processing import Prepared
from moderator.stream.checkpoint import PartitionOffsets
from moderator.wire.input import ImageRequest, Source


@dataclass
class Item:
    """One polled record on its way through the pipeline."""

    source: Source
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    token: PartitionOffsets
    polled_at: float
    work: Future[tuple[ImageRequest | None, Prepared]]


class Batcher:
    """Groups items into micro-batches by size and by the age of the oldest item."""

    def __init__(self, max_size: int, max_wait_s: float) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._items: list[Item] = []
        self._first_at = 0.0

    def add(self, item: Item) -> list[Item] | None:
        if not self._items:
            self._first_at = time.monotonic()
        self._items.append(item)
        return self.take() if len(self._items) >= self.max_size else None

    def due_in(self) -> float | None:
        """Seconds until the partial batch is due; None when empty."""
        if not self._items:
            return None
        return max(0.0, self._first_at + self.max_wait_s - time.monotonic())

    def take(self) -> list[Item]:
        items, self._items = self._items, []
        return items
