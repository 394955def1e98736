"""Process-level tuning of the C heap for the decode path (:func:`keep_heap`)."""

from __future__ import annotations

import ctypes

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_BELOW_BYTES = 32 << 20  # glibc's largest mmap threshold on 64-bit
KEEP_HEAP_BYTES = 128 << 20


def keep_heap() -> None:
    """Serve per-image buffers from a heap the process keeps, not fresh ``mmap`` pages.

    Each image allocates the same few megabytes again (PDQ's binding alone makes five
    full-frame float64/float32 temporaries); glibc maps allocations over its dynamic threshold
    fresh and unmaps them on free, so every image paid the page faults again: 4 to 5 ms of a
    640x480 image's ~12 (measured: docs/benchmarks.md#threads-or-processes). Buffers up to
    ``KEEP_BELOW_BYTES`` now come from the heap, and up to ``KEEP_HEAP_BYTES`` of freed heap
    is kept per arena: a decode child is single-threaded (one arena) and decodes one image at a
    time, so that bounds what it keeps; in the service process each thread that decodes may
    keep that much (decode_mode: threads). Larger buffers (a frame over 32 MB) are mapped as
    before. Not glibc (musl): nothing to tune, nothing done.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW_BYTES)
    mallopt(_M_TRIM_THRESHOLD, KEEP_HEAP_BYTES)
