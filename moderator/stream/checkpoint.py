"""Which offsets may be committed: the single place that decides.

Offsets are tracked per partition in poll order and acknowledged in any order (verdicts of a
batch are acknowledged by the broker independently). The committable offset of a partition is
``o + 1`` for the highest ``o`` such that every tracked offset up to ``o`` is acknowledged: a
message is never committed before itself and everything before it has its verdict or dead
letter safely in the broker.

Commit procedure (:meth:`Checkpoint.commit`):

1. Under the lock, collect for each assigned partition the committable offset, skipping
   partitions with nothing new since the last successful commit.
2. Commit them synchronously (``offset + 1`` semantics already applied).
3. On success, remember them; on failure, keep them for the next attempt and report.

Each partition assignment gets a fresh :class:`PartitionOffsets`; acknowledgements carry the
object they were tracked in, so a late acknowledgement for a revoked assignment is ignored.

:class:`Committer` decides when: every ``commit_interval_ms``, at shutdown, and for revoked
partitions on a rebalance. The worker only supplies the client calls.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from moderator.stream.exceptions import OffsetOrderError


class PartitionOffsets:
    """Offsets of one partition within one assignment. Not thread-safe: guarded by Checkpoint."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.closed = False
        self._pending: deque[int] = deque()
        self._acked: set[int] = set()
        self._last_tracked = -1
        self.committable: int | None = None  # next offset to consume, i.e. last done + 1
        self.committed: int | None = None

    def track(self, offset: int) -> None:
        if offset <= self._last_tracked:
            raise OffsetOrderError(f"{self.topic}[{self.partition}] offset={offset} tracked after offset={self._last_tracked}")
        self._last_tracked = offset
        self._pending.append(offset)

    def ack(self, offset: int) -> None:
        self._acked.add(offset)
        while self._pending and self._pending[0] in self._acked:
            done = self._pending.popleft()
            self._acked.discard(done)
            self.committable = done + 1

    @property
    def in_flight(self) -> int:
        """Tracked offsets not acknowledged yet (acknowledged ones waiting behind them excluded)."""
        return len(self._pending) - len(self._acked)


class Checkpoint:
    """Thread-safe offset bookkeeping for every assigned partition."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._parts: dict[tuple[str, int], PartitionOffsets] = {}

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            for tp in partitions:
                if tp not in self._parts:
                    self._parts[tp] = PartitionOffsets(*tp)

    def assigned(self) -> int:
        """How many partitions are tracked (assigned and not revoked)."""
        with self._lock:
            return len(self._parts)

    def revoke(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Forget partitions; acknowledgements still in flight for them are ignored from now on."""
        with self._lock:
            for tp in partitions:
                part = self._parts.pop(tp, None)
                if part is not None:
                    part.closed = True
            self._lock.notify_all()

    def track(self, topic: str, partition: int, offset: int) -> PartitionOffsets | None:
        """Record a polled offset; returns the token to acknowledge it with, or None when the
        partition is no longer assigned (revoked between poll and dispatch: its new owner
        processes the record).

        Raises:
            OffsetOrderError: the offset does not follow the partition's previous one.
        """
        with self._lock:
            part = self._parts.get((topic, partition))
            if part is None:
                return None
            part.track(offset)
            return part

    def ack(self, token: PartitionOffsets, offset: int) -> None:
        with self._lock:
            if not token.closed:
                token.ack(offset)
                self._lock.notify_all()

    def in_flight(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        with self._lock:
            keys = self._parts.keys() if partitions is None else [tp for tp in partitions if tp in self._parts]
            return sum(self._parts[tp].in_flight for tp in keys)

    def wait_drained(self, partitions: Iterable[tuple[str, int]] | None, timeout: float) -> bool:
        """Block until nothing is in flight (for ``partitions``, or all); False on timeout."""
        keys = None if partitions is None else list(partitions)
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight_locked(keys) == 0, timeout=timeout)

    def _in_flight_locked(self, keys: list[tuple[str, int]] | None) -> int:
        parts = self._parts.values() if keys is None else [self._parts[k] for k in keys if k in self._parts]
        return sum(p.in_flight for p in parts)

    def due(self, partitions: Iterable[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Committable offsets that were not committed yet."""
        with self._lock:
            keys = list(self._parts) if partitions is None else [tp for tp in partitions if tp in self._parts]
            out = {}
            for tp in keys:
                part = self._parts[tp]
                if part.committable is not None and part.committable != part.committed:
                    out[tp] = part.committable
            return out

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {tp: p.committed for tp, p in self._parts.items() if p.committed is not None}

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        with self._lock:
            for tp, off in offsets.items():
                part = self._parts.get(tp)
                if part is not None and (part.committed is None or off > part.committed):
                    part.committed = off

    def commit(self, commit_fn: Callable[[dict[tuple[str, int], int]], Any], partitions: Iterable[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Steps 1-3 above. ``commit_fn`` commits synchronously and raises on failure.

        Returns the offsets committed (empty when nothing was due).
        """
        due = self.due(partitions)
        if due:
            commit_fn(due)
            self.committed(due)
        return due


class Committer:
    """When and what to commit, decided in one place: the done offsets of every partition every
    ``interval_s`` (and at shutdown, forced), and those of revoked partitions on a rebalance.

    ``commit_sync(offsets)`` commits and raises on failure; ``commit_async(offsets, done)``
    queues a commit and calls ``done(error_or_None)`` (kafka-python 3 runs rebalance callbacks on
    its I/O thread, where blocking calls are refused; the request goes out ahead of the rejoin,
    so the broker applies it under the old generation).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        interval_s: float,
        commit_sync: Callable[[dict[tuple[str, int], int]], Any],
        commit_async: Callable[[dict[tuple[str, int], int], Callable[[BaseException | None], None]], Any],
    ) -> None:
        self.checkpoint = checkpoint
        self.interval_s = interval_s
        self._commit_sync = commit_sync
        self._commit_async = commit_async
        self._last: float | None = None

    def maybe_commit(self, force: bool = False) -> dict[tuple[str, int], int] | None:
        """Commit what is done when the interval has passed (or ``force``): the offsets committed,
        None when it was not time yet.

        Raises:
            Exception: whatever ``commit_sync`` raises; the offsets stay due for the next attempt.
        """
        now = time.monotonic()
        if not force and self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        return self.checkpoint.commit(self._commit_sync)

    def revoke(self, partitions: list[tuple[str, int]], wait_s: float, done: Callable[[BaseException | None], None]) -> int:
        """Wait up to ``wait_s`` for the revoked partitions' in-flight outputs, commit what is done
        (asynchronously), then forget them. Returns how many messages were still in flight."""
        left = 0 if self.checkpoint.wait_drained(partitions, wait_s) else self.checkpoint.in_flight(partitions)
        due = self.checkpoint.due(partitions)
        if due:
            self._commit_async(due, done)
        self.checkpoint.revoke(partitions)
        return left

    def lose(self, partitions: list[tuple[str, int]]) -> None:
        """Forget partitions taken away without a revoke (a commit would be refused)."""
        self.checkpoint.revoke(partitions)
