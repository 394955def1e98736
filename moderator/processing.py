"""The decode -> encode -> score core, shared by the stream worker and ``moderator scan``.

Nothing here knows about Kafka: it takes bytes and returns pixels, and takes pixel batches and
returns decisions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from moderator.encoders.base import Encoder
from moderator.errors import MessageError, UndecodableImage
from moderator.media.decode import DecodeLimits, decode_image
from moderator.media.preprocess import Preprocessor
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import Decision, score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """One image after decode and preprocess: pixels, or the reason it cannot be scored."""

    pixels: np.ndarray | None
    error: MessageError | None
    decode_ms: float


@dataclass(frozen=True)
class BatchResult:
    policy: CompiledPolicy  # the policy that made these decisions
    decisions: list[Decision]
    encode_ms: float
    score_ms: float
    shadow: CompiledPolicy | None = None  # the candidate policy, scored on the same embeddings
    shadow_decisions: list[Decision] | None = None


class Processor:
    """Holds the encoder and the compiled policy; stateless per call, safe across threads."""

    def __init__(self, encoder: Encoder, policy: CompiledPolicy, limits: DecodeLimits, shadow: CompiledPolicy | None = None) -> None:
        self.encoder = encoder
        self.policy = policy
        self.shadow = shadow
        self.limits = limits
        self.preprocessor = Preprocessor(encoder.info().preprocess)

    def policy_for(self, role: str) -> CompiledPolicy | None:
        """The policy serving ``role`` ("primary" acts, "shadow" is only reported)."""
        return self.policy if role == "primary" else self.shadow

    def set_policy(self, role: str, policy: CompiledPolicy) -> None:
        """Swap the ``role`` policy: one reference assignment, read once per batch by :meth:`score_batch`."""
        if role == "primary":
            self.policy = policy
        else:
            self.shadow = policy

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one image; never raises (errors are returned)."""
        start = time.perf_counter()
        try:
            pixels = self.preprocessor(decode_image(data, self.limits))
            return Prepared(pixels, None, (time.perf_counter() - start) * 1e3)
        except MessageError as exc:
            return Prepared(None, exc, (time.perf_counter() - start) * 1e3)
        except Exception as exc:  # a decoder bug on hostile input must not take the service down
            log.warning("unexpected decoder error %s: %s", type(exc).__name__, exc)
            err = UndecodableImage(f"decoder failed unexpectedly ({type(exc).__name__}): {exc}")
            return Prepared(None, err, (time.perf_counter() - start) * 1e3)

    def score_batch(self, pixels: list[np.ndarray]) -> BatchResult:
        """Encode a batch of preprocessed squares and score them against the current policy.

        Raises:
            BackendError: the encoder failed; nothing was scored.
        """
        policy, shadow = self.policy, self.shadow  # one of each for the whole batch, even if swapped meanwhile
        start = time.perf_counter()
        embeds = self.encoder.encode_images(np.stack(pixels))
        mid = time.perf_counter()
        decisions = score(embeds, policy)
        shadow_decisions = score(embeds, shadow) if shadow is not None else None
        end = time.perf_counter()
        return BatchResult(policy, decisions, (mid - start) * 1e3, (end - mid) * 1e3, shadow, shadow_decisions)
