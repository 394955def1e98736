"""The one interface every encoder backend implements completely."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from moderator.models.manifest import Preprocess


@dataclass(frozen=True)
class EncoderInfo:
    """What verdicts and metrics say about the model that scored them."""

    backend: str
    model_name: str
    model_checksum: str
    architecture: str
    precision: str
    embed_dim: int
    preprocess: Preprocess
    logit_scale: float
    logit_bias: float | None
    providers: tuple[str, ...]


@runtime_checkable
class Encoder(Protocol):
    """Constructing an encoder makes no network call; :meth:`connect` is the one step that does
    (join a cluster, find or deploy a deployment, check the served model)."""

    def connect(self) -> None:
        """Network handshakes; idempotent; a no-op for an in-process encoder.

        Raises:
            BackendError: the backend is unreachable now; worth retrying.
            ModelError: the backend serves another model.
        """

    def info(self) -> EncoderInfo:
        """Model identity and preprocessing contract."""

    def ready(self) -> bool:
        """True when the backend can encode now."""

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """``uint8 [N,S,S,3]`` preprocessed squares -> L2-normalised ``float32 [N,D]``.

        Raises:
            BackendError: the backend failed; the caller retries.
        """

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> L2-normalised ``float32 [N,D]``.

        Raises:
            BackendError: the backend failed; the caller retries.
        """

    def close(self) -> None:
        """Release sessions and connections."""
