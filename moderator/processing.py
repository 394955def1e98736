"""The hash -> decode -> encode -> score core, shared by the stream worker and ``moderator scan``.

Nothing here knows about Kafka: it takes bytes and returns pixels (or a decision already made:
a cached result, a known-content match that blocks), and takes pixel batches and returns
decisions; :meth:`Processor.outcomes` joins the two into what a verdict says.

Stages in order (docs/policies.md#known-content): SHA-256 of the image bytes, the result cache,
the SHA-256 banks, decode with a PDQ hash of every kept frame, the PDQ banks, the classifier.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from moderator.encoders.base import Encoder
from moderator.errors import MessageError, UndecodableImage
from moderator.hashing import known as known_content
from moderator.hashing.banks import Banks
from moderator.hashing.cache import ResultCache
from moderator.hashing.compute import PDQ_MIN_SIDE, Hashes, PdqHash, pdq_of, sha256_of
from moderator.hashing.known import Known
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits, FrameSet, decode_frames
from moderator.media.preprocess import Preprocessor
from moderator.media.processes import DecodeProcesses
from moderator.media.video import decode_video, looks_like_video
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import ACTIONS, Decision, Groups, score_frames

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


# Most frames sent to the encoder in one call: a message of many frames is encoded in slices, so
# one animation costs its own frames' time and never one giant call.
ENCODE_CHUNK = 64


# Pillow's reducing_gap for the fast path: >= 3 is indistinguishable from a one-step resize in Pillow's
# own tests; measured here in docs/benchmarks.md#decode.
FAST_REDUCING_GAP = 3.0

# How long past ``max_decode_seconds`` a decode process may run before it is killed: the
# cooperative check runs between frames, so a frame begun just before the deadline still
# finishes (a 4K frame decodes in well under a second here); a codec stuck inside one frame never
# reaches the check, and this bounds it.
HARD_TIMEOUT_GRACE_S = 10.0


@dataclass(frozen=True)
class KnownContentOptions:
    pdq: bool = True  # hash every kept frame with PDQ (the verdict carries it; PDQ banks need it)
    quality_floor: int = 50  # PDQ hashes of lower quality never match (flat images match too easily)
    turns: bool = True  # deny banks also match the frames' mirror images and quarter turns (PDQ's dihedral hashes)
    trim: bool = True  # deny banks also match the frames without their uniform border

    @property
    def hasher(self) -> Callable[[Image.Image], PdqHash] | None:
        """What hashes each kept frame (picklable: it crosses to decode processes)."""
        if not self.pdq:
            return None
        return functools.partial(pdq_of, turns=self.turns, trim=self.trim) if self.turns or self.trim else pdq_of


@dataclass(frozen=True)
class Outcome:
    """What a verdict says about one image's content, without pixels (so it can be cached):
    the classifier's decision if it ran, the banks' verdict if any matched, and the result."""

    policy: CompiledPolicy
    classifier: Decision | None  # None when a deny match decided without the classifier
    known: Known | None
    hashes: Hashes | None
    frames: FrameSet | None = None
    shadow: CompiledPolicy | None = None
    shadow_classifier: Decision | None = None
    banks_version: str = ""  # of the banks that were looked up

    @property
    def decision(self) -> str:
        return final_decision(self.known, self.classifier.decision if self.classifier is not None else None)

    @property
    def shadow_decision(self) -> str | None:
        if self.shadow is None or (self.shadow_classifier is None and self.classifier is not None):
            return None
        return final_decision(self.known, self.shadow_classifier.decision if self.shadow_classifier is not None else None)

    @property
    def reasons(self) -> list[str]:
        classifier = self.classifier.reasons if self.classifier is not None else []
        if self.known is None:
            return classifier
        if self.known.kind == "allow":
            said = self.classifier.decision if self.classifier is not None else "allow"
            if self.decision != "allow":
                return [*classifier, f"{self.known.reason} does not override a {said} (the bank's overrides: {self.known.overrides})"]
            return [self.known.reason + (f"; the classifier's {said} is overridden" if said != "allow" else "")]
        return [self.known.reason, *classifier]


def final_decision(known: Known | None, classifier: str | None) -> str:
    """The decision once known content is taken into account (docs/policies.md#known-content)."""
    if known is None:
        assert classifier is not None
        return classifier
    if known.kind == "allow":
        if classifier is not None and ACTIONS.index(classifier) > ACTIONS.index(known.overrides):
            return classifier
        return "allow"
    if classifier is None:
        return known.match.action
    return max(known.match.action, classifier, key=ACTIONS.index)


@dataclass(frozen=True)
class Prepared:
    """One message's image after hashing, decode and preprocess: its kept frames' pixels
    ``uint8 [F, S, S, 3]`` (one frame for a still), or the reason it cannot be scored, or an
    outcome already known (``cached``: an identical image decided before; ``known`` deciding:
    a deny match that blocks), in which case there is nothing to encode."""

    pixels: np.ndarray | None
    error: MessageError | None
    decode_ms: float
    frames: FrameSet | None = None
    hashes: Hashes | None = None
    known: Known | None = None
    cached: Outcome | None = None
    lookup_ms: float = 0.0  # bank lookups (part of decode_ms)
    banks_version: str = ""

    @property
    def needs_encoding(self) -> bool:
        return self.error is None and self.cached is None and not (self.known is not None and self.known.decides)


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

    def __init__(
        self,
        encoder: Encoder,
        policy: CompiledPolicy,
        limits: DecodeLimits,
        shadow: CompiledPolicy | None = None,
        frame_limits: FrameLimits | None = None,
        banks: Banks | None = None,
        known: KnownContentOptions | None = None,
        cache: ResultCache | None = None,
        fast_decode: bool = True,
        crops: str = "auto",
        max_crops: int = 5,
    ) -> None:
        self.encoder = encoder
        self.policy = policy
        self.shadow = shadow
        self.banks = banks
        self.limits = limits
        self.frame_limits = frame_limits or FrameLimits()
        self.known_options = known or KnownContentOptions()
        self.cache = cache
        pre = encoder.info().preprocess
        # fast_decode (media.fast_decode): large JPEGs decoded at a reduced DCT scale, to no less
        # than twice the model's input (and PDQ's working size when hashing), and resizes in two
        # steps (a box reduce, then the model's filter over at least 3x the output). False: the
        # training transform exactly. Measured: docs/benchmarks.md#decode.
        # crops, max_crops (media.crops): what is scored of a frame that is not square.
        self.preprocessor = Preprocessor(pre, reducing_gap=FAST_REDUCING_GAP if fast_decode else None, crops=crops, max_crops=max_crops)
        self.draft_side = draft_side(pre.image_size, self.known_options.pdq, fast_decode)
        self._checksum = encoder.info().model_checksum
        # bytes -> FrameSet: pure (no banks, cache or policy), so it can run in another process.
        self._decode: Callable[[bytes], FrameSet] = functools.partial(
            decode_any,
            limits=limits,
            frame_limits=self.frame_limits,
            prepare=self.preprocessor,
            hasher=self.known_options.hasher,
            draft_side=self.draft_side,
        )
        self._processes: DecodeProcesses | None = None

    def decode_in_processes(self, processes: int, on_restart: Callable[[str], None] | None = None, memory_mb: int | None = None) -> DecodeProcesses:
        """Decode in ``processes`` worker processes from now on (``media.decode_mode: processes``;
        :mod:`moderator.media.processes`), started before this returns. A decode is stopped
        :data:`HARD_TIMEOUT_GRACE_S` after ``max_decode_seconds``; a process may allocate
        ``memory_mb`` beyond what it holds once started (None: no cap)."""
        pool = DecodeProcesses(
            processes,
            self._decode,
            self.frame_limits.max_decode_seconds + HARD_TIMEOUT_GRACE_S,
            self.frame_limits.max_frames,
            self.preprocessor.size,
            on_restart,
            PdqHash if self.known_options.pdq else None,
            memory_mb << 20 if memory_mb else None,
            self.preprocessor.max_crops,
        )
        try:
            pool.start()
        except BaseException:
            pool.close()
            raise
        self._processes = pool
        self._decode = pool
        return pool

    def close(self) -> None:
        """Stop the decode processes, if any (the encoder is closed by its owner)."""
        if self._processes is not None:
            self._processes.close()

    def policy_for(self, role: str) -> CompiledPolicy | None:
        """The policy serving ``role`` ("primary" acts, "shadow" is only reported)."""
        return self.policy if role == "primary" else self.shadow

    def set_policy(self, role: str, policy: CompiledPolicy) -> None:
        """Swap the ``role`` policy: one reference assignment, read once per batch by :meth:`score_batch`."""
        if role == "primary":
            self.policy = policy
        else:
            self.shadow = policy

    def set_banks(self, banks: Banks) -> None:
        """Swap the hash banks: one reference assignment, read once per message by :meth:`prepare`."""
        self.banks = banks

    def _cache_key(self, sha256: bytes, policy: CompiledPolicy, shadow: CompiledPolicy | None, banks_version: str) -> tuple:
        return sha256, self._checksum, policy.version, shadow.version if shadow is not None else "", banks_version

    def prepare(self, data: bytes) -> Prepared:
        """Hash, look up, decode, select and preprocess the frames of one image; never raises
        (errors are returned)."""
        start = time.perf_counter()
        banks = self.banks  # one set of banks for the whole message, even if swapped meanwhile
        version = banks.version if banks is not None else ""
        sha256 = sha256_of(data)
        if self.cache is not None:
            hit = self.cache.get(self._cache_key(sha256, self.policy, self.shadow, version))
            if hit is not None:
                return Prepared(None, None, (time.perf_counter() - start) * 1e3, hit.frames, hit.hashes, hit.known, hit)
        lookup = time.perf_counter()
        exact = known_content.exact(banks, sha256)
        lookup_ms = (time.perf_counter() - lookup) * 1e3
        if exact is not None and exact.decides:  # known bad bytes: not even decoded
            return Prepared(None, None, (time.perf_counter() - start) * 1e3, None, Hashes(sha256), exact, lookup_ms=lookup_ms, banks_version=version)
        try:
            frames = self._decode(data)
        except MessageError as exc:
            return Prepared(None, exc, (time.perf_counter() - start) * 1e3, hashes=Hashes(sha256))
        except Exception as exc:  # a decoder bug on hostile input must not take the service down
            log.warning("unexpected decoder error %s: %s", type(exc).__name__, exc)
            err = UndecodableImage(f"decoder failed unexpectedly ({type(exc).__name__}): {exc}")
            return Prepared(None, err, (time.perf_counter() - start) * 1e3, hashes=Hashes(sha256))
        hashes = Hashes(sha256, _bare_hashes(frames.hashes))
        lookup = time.perf_counter()
        near = known_content.near(banks, frames.hashes, self.known_options.quality_floor, frames.overflow)
        known = known_content.combine(exact, near)
        lookup_ms += (time.perf_counter() - lookup) * 1e3
        pixels = None if known is not None and known.decides else frames.pixels
        return Prepared(pixels, None, (time.perf_counter() - start) * 1e3, frames, hashes, known, lookup_ms=lookup_ms, banks_version=version)

    def decided(self, prepared: Prepared) -> Outcome | None:
        """The outcome of a message that needs no encoding (a cache hit, or a deny match that
        blocks; the latter is cached), else None."""
        if prepared.cached is not None:
            return prepared.cached
        if prepared.error is not None or prepared.needs_encoding:
            return None
        policy, shadow = self.policy, self.shadow
        outcome = Outcome(policy, None, prepared.known, prepared.hashes, _without_pixels(prepared.frames), shadow, banks_version=prepared.banks_version)
        self._remember(outcome)
        return outcome

    def outcomes(self, prepared: list[Prepared], result: BatchResult) -> list[Outcome]:
        """The outcomes of messages scored together in ``result`` (in order), cached."""
        shadows: list[Decision | None] = list(result.shadow_decisions) if result.shadow_decisions else [None for _ in prepared]
        out = []
        for p, decision, shadow in zip(prepared, result.decisions, shadows):
            outcome = Outcome(result.policy, decision, p.known, p.hashes, _without_pixels(p.frames), result.shadow, shadow, p.banks_version)
            self._remember(outcome)
            out.append(outcome)
        return out

    def _remember(self, outcome: Outcome) -> None:
        if self.cache is not None and outcome.hashes is not None:
            self.cache.put(self._cache_key(outcome.hashes.sha256, outcome.policy, outcome.shadow, outcome.banks_version), outcome)

    def score_prepared(self, prepared: Sequence[Prepared]) -> BatchResult:
        """:meth:`score_batch` for prepared messages that need encoding: their squares, overflow
        and frames."""
        frames = [p.frames for p in prepared]
        pixels = [p.pixels for p in prepared]
        if any(p is None for p in pixels):
            raise ValueError("a prepared message without pixels needs no encoding (decided, cached or failed)")
        return self.score_batch(cast(list[np.ndarray], pixels), [bool(f and f.overflow) for f in frames], [f.indices if f else None for f in frames])

    def score_batch(self, pixels: list[np.ndarray], overflow: list[bool] | None = None, groups: Groups | None = None) -> BatchResult:
        """Encode a batch of messages' squares (each ``uint8 [R, S, S, 3]``, or one ``[S, S, 3]``
        image) and score each message against the current policy, the squares of a frame pooled
        and frames aggregated (``groups``: each message's ``FrameSet.indices``; see
        :func:`~moderator.policy.score.score_frames`).

        Raises:
            BackendError: the encoder failed; nothing was scored.
        """
        policy, shadow = self.policy, self.shadow  # one of each for the whole batch, even if swapped meanwhile
        stacks = [p[None] if p.ndim == 3 else p for p in pixels]
        counts = [len(p) for p in stacks]
        frames = np.concatenate(stacks) if len(stacks) > 1 else stacks[0]
        start = time.perf_counter()
        embeds = np.concatenate([self.encoder.encode_images(frames[i : i + ENCODE_CHUNK]) for i in range(0, len(frames), ENCODE_CHUNK)])
        mid = time.perf_counter()
        decisions = score_frames(embeds, policy, counts, overflow, groups)
        shadow_decisions = score_frames(embeds, shadow, counts, overflow, groups) if shadow is not None else None
        end = time.perf_counter()
        return BatchResult(policy, decisions, (mid - start) * 1e3, (end - mid) * 1e3, shadow, shadow_decisions)


def decode_any(data: bytes, limits: DecodeLimits, frame_limits: FrameLimits, prepare, hasher=None, draft_side: int | None = None) -> FrameSet:
    """Decode, select and prepare the frames of an image or video file (hashing each kept frame
    with ``hasher``, if given; large JPEGs at a reduced scale when ``draft_side`` is given).

    Raises:
        MessageError: as :func:`~moderator.media.frames.decode_frames` and :func:`~moderator.media.video.decode_video`.
    """
    if looks_like_video(data):
        return decode_video(data, limits, frame_limits, prepare, hasher)
    return decode_frames(data, limits, frame_limits, prepare, hasher, draft_side)


def draft_side(image_size: int, pdq: bool, fast_decode: bool) -> int | None:
    """The shorter side a large JPEG is decoded down to (None: full size): twice the model's
    input, and no less than PDQ's working size when hashing. The service and ``moderator hashes``
    both use it, so a bank built with the tool holds the hashes the service computes."""
    return max(2 * image_size, PDQ_MIN_SIDE if pdq else 0) if fast_decode else None


def hash_image(
    data: bytes,
    limits: DecodeLimits,
    frame_limits: FrameLimits,
    pdq: bool = True,
    draft: int | None = None,
    prepare: Preprocessor | None = None,
    turns: bool = False,
    trim: bool = False,
) -> tuple[Hashes, FrameSet]:
    """The hashes of an image or video file, as the service computes them (``moderator hashes``);
    ``draft``: the service's :func:`draft_side`, for the same PDQ on large JPEGs; ``prepare``: the
    service's preprocessor, for the same frames (they are selected by what the model sees).
    Without it, frames whose thumbnails are near are taken for the same. ``turns``, ``trim``: each
    frame's dihedral hashes and the hash inside its border too (to look it up in deny banks as the
    service does).

    Raises:
        MessageError: the file cannot be decoded.
    """
    frames = decode_any(data, limits, frame_limits, prepare or _no_pixels, KnownContentOptions(pdq, turns=turns, trim=trim).hasher, draft)
    return Hashes(sha256_of(data), frames.hashes), frames


def _no_pixels(_image) -> np.ndarray:
    return np.zeros((1, 1, 3), np.uint8)


def _without_pixels(frames: FrameSet | None) -> FrameSet | None:
    """What an outcome keeps of the frames (it may be cached): neither pixels nor turns' hashes."""
    return None if frames is None else dataclasses.replace(frames, pixels=np.empty((0,), np.uint8), hashes=_bare_hashes(frames.hashes))


def _bare_hashes(hashes: tuple) -> tuple:
    """PDQ hashes without their turns and trimmed hash (looked up already: not to keep)."""
    return tuple(PdqHash(h.bits, h.quality) if h.turns or h.trimmed is not None else h for h in hashes)
