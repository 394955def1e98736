"""The result cache: what was decided about an image, keyed by its SHA-256 and everything else
the decision depends on (model checksum, policy and shadow policy versions, banks version), so
an identical repost is decided without decode, encode or scoring, and a reload of any of them
makes the old entries unreachable (they age out of the LRU; :meth:`clear` drops them at once).

Only decisions are cached, never failures: a decode that ran out of time under load may succeed
later. Bounded by entries (``hashing.cache_size``; about 2.4 KB an entry with the default policy's five categories,
measured with tracemalloc). Thread-safe: decode threads read, the encode thread writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ResultCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
