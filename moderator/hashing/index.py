"""Near-neighbour search over PDQ hashes by Hamming distance: multi-index hashing, exact.

The 256 bits are cut into :data:`CHUNKS` chunks of 16 bits. If two hashes are within distance
``r``, at least one chunk differs in at most ``r // 16`` bits (pigeonhole: 16 chunks each
differing in more would differ in more than ``r`` bits altogether). So a query looks up, in each
chunk's table, the buckets of its own chunk value with up to ``r // 16`` bits flipped (17 buckets
per chunk at the default radius 31), and checks the true distance of every hash found there. No
match within the radius can be missed; the work is proportional to the hashes sharing a bucket.

Each chunk's table is a sorted permutation of row numbers plus 65 537 bucket offsets, built with
numpy (``argsort`` of one column): 64 bytes of index per hash beside the 32 of the hash itself,
and 4 MB of offsets. Why not faiss: ``IndexBinaryMultiHash(256, 16, 16)`` with ``nflip=1``
(the same exact scheme) measured 1.8 ms p50 / 2.7 ms p99 per query on a million random hashes
on this machine kind, this index 0.1 ms / 0.2 ms (figures: docs/benchmarks.md#hashing); faiss's
faster settings (fewer, wider chunks without enough flips) miss matches.

When a query would visit more rows than a linear scan reads (small banks, or a radius of 48 and
more), the index scans linearly instead: same result, less work.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations

import numpy as np

from moderator.hashing.compute import PDQ_BITS, PDQ_BYTES

CHUNKS = 16
CHUNK_BITS = PDQ_BITS // CHUNKS
BUCKETS = 1 << CHUNK_BITS
MAX_RADIUS = 64  # distances over a quarter of the bits match unrelated images; a bank may not ask for more
LINEAR_BELOW = 2_048  # rows: smaller indexes are scanned linearly (as fast as probing there, and no index memory)


@lru_cache(maxsize=8)
def flip_masks(bits: int) -> np.ndarray:
    """Every 16-bit mask with at most ``bits`` bits set."""
    masks = [0]
    for k in range(1, bits + 1):
        masks.extend(sum(1 << i for i in c) for c in combinations(range(CHUNK_BITS), k))
    return np.array(masks, dtype=np.int64)


class PdqIndex:
    def __init__(self, hashes: np.ndarray) -> None:
        """``hashes``: ``uint8 [N, 32]``, one PDQ hash a row."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, PDQ_BYTES)
        self.size = len(hashes)
        self.words = hashes.view(np.uint64)  # [N, 4], for the distances
        self._linear = self.size < LINEAR_BELOW
        if self._linear:
            return
        chunks = hashes.view(">u2").astype(np.uint16)  # [N, 16], native order
        self.rows = np.empty(CHUNKS * self.size, dtype=np.int32)  # per chunk, rows sorted by its value
        offsets = np.zeros((CHUNKS, BUCKETS + 1), dtype=np.int64)
        for j in range(CHUNKS):
            column = np.ascontiguousarray(chunks[:, j])
            self.rows[j * self.size : (j + 1) * self.size] = np.argsort(column, kind="stable")  # radix sort for 16 bits
            np.cumsum(np.bincount(column, minlength=BUCKETS), out=offsets[j, 1:])
        offsets += (np.arange(CHUNKS, dtype=np.int64) * self.size)[:, None]  # into the flat rows
        self.offsets = offsets.astype(np.int32) if CHUNKS * self.size < 2**31 else offsets

    @property
    def nbytes(self) -> int:
        extra = 0 if self._linear else self.rows.nbytes + self.offsets.nbytes
        return self.words.nbytes + extra

    def search(self, query: bytes, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows within ``radius`` of ``query`` and their distances, nearest first."""
        return self.search_many([query], radius)[0]

    def search_many(self, queries: Sequence[bytes], radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`search` for each of ``queries`` (a frame's hash and its turns), in one pass over
        the buckets: the fixed cost of a search is numpy's per call, not the work."""
        if not 0 <= radius <= MAX_RADIUS:
            raise ValueError(f"radius must be in 0..{MAX_RADIUS}")
        if not queries:
            return []
        q = np.frombuffer(b"".join(queries), dtype=np.uint8).reshape(-1, PDQ_BYTES)
        words = q.view(np.uint64)  # [Q, 4]
        if self.size == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.int64)) for _ in queries]
        found = self._candidates(q, radius)
        if found is None:  # a linear scan each
            return [_nearest_first(*self._within(None, words[j], radius)) for j in range(len(q))]
        rows, owner = found
        distances = _distances(np.take(self.words, rows, axis=0), words[owner])  # each against its own query
        keep = distances <= radius
        rows, owner, distances = rows[keep], owner[keep], distances[keep]
        if len(q) == 1:
            return [_nearest_first(rows, distances)]
        return [_nearest_first(rows[owner == j], distances[owner == j]) for j in range(len(q))]

    def _within(self, rows: np.ndarray | None, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Of ``rows`` (None: all), those within ``radius`` of ``q``, with their distances."""
        distances = _distances(self.words if rows is None else np.take(self.words, rows, axis=0), q)
        keep = distances <= radius
        return (np.flatnonzero(keep) if rows is None else rows[keep]), distances[keep]

    def _candidates(self, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows sharing a probed bucket with each query ``q[j]``, and ``j`` for each; None when a
        linear scan is cheaper."""
        if self._linear:
            return None
        masks = flip_masks(radius // CHUNKS)
        if len(masks) * CHUNKS * (self.size / BUCKETS) > self.size / 2:
            return None
        probes = q.view(">u2").astype(np.int64)[:, :, None] ^ masks[None, None, :]  # [Q, 16, M]
        table = np.arange(CHUNKS, dtype=np.int64)[None, :, None]
        starts = self.offsets[table, probes].reshape(len(q), -1).astype(np.int64)
        lengths = self.offsets[table, probes + 1].reshape(len(q), -1) - starts
        totals = lengths.sum(axis=1)
        if int(totals.max()) > self.size // 2:
            return None
        total = int(totals.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        starts, lengths = starts.ravel(), lengths.ravel()
        nonempty = lengths > 0
        starts, lengths = starts[nonempty], lengths[nonempty]
        ends = np.cumsum(lengths)
        positions = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)
        owner = np.repeat(np.arange(len(q), dtype=np.int64), totals)
        return self.rows[positions].astype(np.int64), owner


def _distances(words: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamming distances of hashes (``uint64 [n, 4]``) from ``q`` (``[4]``, or ``[n, 4]``: one each)."""
    counts = np.bitwise_count(words ^ q)  # [n, 4] uint8
    return counts[:, 0].astype(np.int64) + counts[:, 1] + counts[:, 2] + counts[:, 3]


def _nearest_first(rows: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row once (it may share buckets with the query in several chunks), nearest first."""
    if len(rows) > 1:
        rows, first = np.unique(rows, return_index=True)
        distances = distances[first]
    order = np.argsort(distances, kind="stable")
    return rows[order], distances[order]
