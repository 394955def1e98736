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
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits, FrameSet, decode_frames
from moderator.media.preprocess import Preprocessor
from moderator.media.video import decode_video, looks_like_video
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import Decision, score_frames

log = logging.getLogger(__name__)


# Most frames sent to the encoder in one call: a message of many frames is encoded in slices, so
# one animation costs its own frames' time and never one giant call.
ENCODE_CHUNK = 64


@dataclass(frozen=True)
class Prepared:
    """One message's image after decode and preprocess: its kept frames' pixels ``uint8
    [F, S, S, 3]`` (one frame for a still), or the reason it cannot be scored."""

    pixels: np.ndarray | None
    error: MessageError | None
    decode_ms: float
    frames: FrameSet | None = None


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

    def __init__(self, encoder: Encoder, policy: CompiledPolicy, limits: DecodeLimits, shadow: CompiledPolicy | None = None,
                 frame_limits: FrameLimits | None = None) -> None:
        self.encoder = encoder
        self.policy = policy
        self.shadow = shadow
        self.limits = limits
        self.frame_limits = frame_limits or FrameLimits()
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
        """Decode, select and preprocess the frames of one image; never raises (errors are returned)."""
        start = time.perf_counter()
        try:
            if looks_like_video(data):
                frames = decode_video(data, self.limits, self.frame_limits, self.preprocessor)
            else:
                frames = decode_frames(data, self.limits, self.frame_limits, self.preprocessor)
            return Prepared(frames.pixels, None, (time.perf_counter() - start) * 1e3, frames)
        except MessageError as exc:
            return Prepared(None, exc, (time.perf_counter() - start) * 1e3)
        except Exception as exc:  # a decoder bug on hostile input must not take the service down
            log.warning("unexpected decoder error %s: %s", type(exc).__name__, exc)
            err = UndecodableImage(f"decoder failed unexpectedly ({type(exc).__name__}): {exc}")
            return Prepared(None, err, (time.perf_counter() - start) * 1e3)

    def score_batch(self, pixels: list[np.ndarray], overflow: list[bool] | None = None) -> BatchResult:
        """Encode a batch of messages' frames (each ``uint8 [F, S, S, 3]``, or one ``[S, S, 3]``
        image) and score each message against the current policy, frames aggregated.

        Raises:
            BackendError: the encoder failed; nothing was scored.
        """
        policy, shadow = self.policy, self.shadow  # one of each for the whole batch, even if swapped meanwhile
        stacks = [p[None] if p.ndim == 3 else p for p in pixels]
        counts = [len(p) for p in stacks]
        frames = np.concatenate(stacks) if len(stacks) > 1 else stacks[0]
        start = time.perf_counter()
        embeds = np.concatenate([self.encoder.encode_images(frames[i:i + ENCODE_CHUNK]) for i in range(0, len(frames), ENCODE_CHUNK)])
        mid = time.perf_counter()
        decisions = score_frames(embeds, policy, counts, overflow)
        shadow_decisions = score_frames(embeds, shadow, counts, overflow) if shadow is not None else None
        end = time.perf_counter()
        return BatchResult(policy, decisions, (mid - start) * 1e3, (end - mid) * 1e3, shadow, shadow_decisions)
