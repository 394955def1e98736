"""Text embeddings cached on disk, keyed by model checksum and prompt text, so a restart or a
one-word policy edit encodes only what changed."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderator.encoders.base import Encoder

log = logging.getLogger(__name__)


class EmbeddingCache:
    """``directory/<model checksum>.npz``: one array per prompt, named by the prompt's SHA-256.

    ``directory=None`` keeps nothing between runs. An unwritable directory is logged once and
    the cache works in memory only: a cache never stops the service.
    """

    def __init__(self, directory: Path | None, model_checksum: str) -> None:
        self.path = None if directory is None else Path(directory) / f"{model_checksum}.npz"
        self._mem: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path) as data:
                    self._mem = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable embedding cache %s: %s", self.path, exc)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def encode(self, encoder: Encoder, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Embeddings of ``texts`` (unique), encoding only those not cached."""
        unique = list(dict.fromkeys(texts))
        missing = [t for t in unique if self.key(t) not in self._mem]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            for text, emb in zip(missing, encoder.encode_texts(missing)):
                self._mem[self.key(text)] = emb.astype(np.float32)
            self._save()
        return {t: self._mem[self.key(t)] for t in unique}

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **self._mem)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
            os.replace(tmp, self.path)  # atomic: concurrent readers see the old or the new file
        except OSError as exc:
            log.warning("embedding cache %s is not writable (%s); caching in memory only", self.path, exc)
            self.path = None
