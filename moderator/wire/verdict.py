"""The verdict: one JSON object per input message, on the verdict topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moderator.encoders.base import EncoderInfo
from moderator.hashing.banks import Match
from moderator.hashing.compute import one_per_frame
from moderator.policy.compile import CompiledPolicy
from moderator.processing import Outcome
from moderator.wire.input import ImageRequest

# 2 (compatible with 1: fields only added): hashes, known, cached; categories empty when a
# known-content match decided without the classifier; a match's turn (added within 2).
SCHEMA_VERSION: Literal[2] = 2
MAX_MATCHES_SHOWN = 16


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRef(_Model):
    topic: str
    partition: int
    offset: int
    timestamp: int | None = Field(description="The input message's timestamp, ms since the epoch.")


class ModelRef(_Model):
    name: str
    checksum: str
    precision: str
    backend: str


class PolicyRef(_Model):
    name: str
    version: str = Field(description="Content hash of the policy file.")
    label: str = Field("", description="The policy's own version label, if it sets one.")


class ShadowVerdict(_Model):
    policy: PolicyRef
    decision: Literal["allow", "review", "block"]
    fired: list[str] = Field(description="Categories of the shadow policy that fired.")


class CategoryVerdict(_Model):
    name: str
    score: float = Field(
        description="The category's score (cosine similarity, or a probability under softmax/sigmoid scoring): its highest over the scored frames."
    )
    review_threshold: float
    block_threshold: float
    action: Literal["allow", "review", "block"]
    fired: bool
    frame: int | None = Field(None, description="Animated images: the frame number (from 0, in the file) that gave the score.")
    frame_timestamp_ms: int | None = Field(None, description="Animated images: when that frame is first shown, ms from the start.")


class FramesRef(_Model):
    total: int = Field(description="Frames in the file.")
    distinct: int = Field(
        description="Frames that differ from every frame kept before them in what the model sees (media.frame_change_threshold); a frame with"
        " transparency counts once for each rendering (media.second_background) that does."
    )
    scored: int = Field(
        description="Frames encoded and scored; a frame scored as several squares (its renderings over two pages, its crops: media.crops) counts once."
    )
    overflow: Literal["review", "reject", "sample"] | None = Field(
        None,
        description=(
            "Set when not all of the message was scored (more distinct frames than media.max_frames, a video that stopped early, or a"
            " frame too long for media.max_crops squares to cover): the policy's frames.on_overflow rule applied."
        ),
    )


class PdqRef(_Model):
    hash: str = Field(description="PDQ hash, 64 hex digits.")
    quality: int = Field(description="PDQ quality, 0..100; under hashing.pdq_quality_floor the hash never matches a bank.")
    frame: int | None = Field(None, description="Animated images: the frame number (from 0, in the file).")


class HashesRef(_Model):
    sha256: str = Field(description="SHA-256 of the image bytes (the raw value, or the envelope's decoded image), hex.")
    pdq: list[PdqRef] = Field(description="PDQ of each scored frame; empty when PDQ is off or the image was not decoded.")


class MatchRef(_Model):
    bank: str
    kind: Literal["deny", "allow"]
    hash_type: Literal["sha256", "pdq"]
    hash: str = Field(description="The bank entry's hash.")
    distance: int = Field(description="Hamming distance from the image's hash (0 for sha256).")
    category: str
    action: Literal["allow", "review", "block"]
    note: str
    added: str
    line: int = Field(description="The entry's line in its bank file.")
    frame: int | None = Field(None, description="PDQ matches of animated images: the frame number that matched.")
    turn: Literal["rotate90", "rotate180", "rotate270", "flip", "mirror", "transpose", "transverse"] | None = Field(
        None,
        description=(
            "PDQ deny matches (hashing.pdq_turns): how the frame had to be turned to match the bank's entry (rotations counter-clockwise;"
            " mirror: left-right; flip: top-bottom; transpose and transverse: mirrored about a diagonal); null: as it is."
        ),
    )
    trimmed: bool = Field(False, description="PDQ deny matches (hashing.pdq_trim_borders): the frame matched with its uniform border cut off.")


class KnownRef(_Model):
    kind: Literal["deny", "allow"] = Field(
        description="deny: known bad content; allow: known good content: the classifier overridden, up to what the match may override (decision says what stood)."
    )
    reason: Literal["hash_match", "hash_allow"]
    match: MatchRef = Field(description="The deciding match.")
    matches: list[MatchRef] = Field(description="Every match found (at most 16), the deciding one first.")
    classifier_decision: Literal["allow", "review", "block"] | None = Field(
        description="What the classifier decided on its own; null when the deny match decided without it."
    )


class Timings(_Model):
    decode_ms: float = Field(description="Decode and preprocess of this image.")
    queue_ms: float = Field(description="From poll to the start of its batch's encoder call.")
    encode_ms: float = Field(description="Its batch's encoder call.")
    score_ms: float = Field(description="Its batch's scoring.")
    batch_size: int


class Verdict(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", title="ModeratorVerdict")

    schema_version: Literal[2] = SCHEMA_VERSION
    id: str
    source: SourceRef
    model: ModelRef
    policy: PolicyRef
    decision: Literal["allow", "review", "block"]
    reasons: list[str] = Field(description="Known-content match first, then fired categories, most severe first, in words.")
    categories: list[CategoryVerdict] = Field(description="The classifier's categories; empty when a deny match decided without it.")
    metadata: dict[str, Any] = Field(description="Input headers (raw images) or envelope metadata, passed through.")
    timings: Timings
    frames: FramesRef | None = Field(
        None, description="Animated and multi-image files: how many frames there were and how many were scored; null for a still image."
    )
    shadow: ShadowVerdict | None = Field(None, description="The shadow policy's decision, when one is configured. Never acted on.")
    hashes: HashesRef | None = Field(None, description="The image's hashes (schema 2).")
    known: KnownRef | None = Field(None, description="Known content: the hash bank match that decided or overrode (schema 2).")
    cached: bool = Field(
        False, description="Decided from the result cache: an identical image was decided before with the same model, policies and banks (schema 2)."
    )
    processed_at: str = Field(description="RFC 3339 UTC time the verdict was made.")


def build_verdict(request: ImageRequest, outcome: Outcome, model: EncoderInfo, timings: Timings, cached: bool = False) -> Verdict:
    frames = outcome.frames
    shown = frames if frames is not None and frames.animated else None  # the frames a verdict reports: an animation's
    decision = outcome.classifier
    src = request.source
    indices = shown.indices if shown is not None else None
    pdq = outcome.hashes.pdq if outcome.hashes is not None else ()
    return Verdict(
        id=request.id,
        source=SourceRef(topic=src.topic, partition=src.partition, offset=src.offset, timestamp=src.timestamp_ms),
        model=ModelRef(name=model.model_name, checksum=model.model_checksum, precision=model.precision, backend=model.backend),
        policy=_policy_ref(outcome.policy),
        decision=outcome.decision,
        reasons=outcome.reasons,
        categories=[
            CategoryVerdict(
                name=c.name,
                score=round(c.score, 6),
                review_threshold=c.review,
                block_threshold=c.block,
                action=c.action,
                fired=c.fired,
                frame=shown.indices[c.frame] if shown is not None else None,
                frame_timestamp_ms=shown.timestamps_ms[c.frame] if shown is not None else None,
            )
            for c in (decision.categories if decision is not None else ())
        ],
        metadata=request.metadata,
        timings=timings,
        frames=FramesRef(total=shown.total, distinct=shown.distinct, scored=shown.scored, overflow=decision.overflow if decision is not None else None)
        if shown is not None
        else None,
        shadow=None
        if outcome.shadow is None
        else ShadowVerdict(
            policy=_policy_ref(outcome.shadow),
            decision=outcome.shadow_decision or outcome.decision,
            fired=[c.name for c in outcome.shadow_classifier.fired] if outcome.shadow_classifier is not None else [],
        ),
        hashes=None
        if outcome.hashes is None
        else HashesRef(
            sha256=outcome.hashes.sha256.hex(),
            pdq=[PdqRef(hash=pdq[i].hex, quality=pdq[i].quality, frame=indices[i] if indices else None) for i in one_per_frame(pdq, indices)],
        ),
        known=None
        if outcome.known is None
        else KnownRef(
            kind=outcome.known.kind,
            reason="hash_match" if outcome.known.kind == "deny" else "hash_allow",
            match=_match_ref(outcome.known.match, indices),
            matches=[_match_ref(m, indices) for m in outcome.known.matches[:MAX_MATCHES_SHOWN]],
            classifier_decision=decision.decision if decision is not None else None,
        ),
        cached=cached,
        processed_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def _policy_ref(policy: CompiledPolicy) -> PolicyRef:
    return PolicyRef(name=policy.name, version=policy.version, label=policy.label)


def _match_ref(m: Match, indices: tuple[int, ...] | None) -> MatchRef:
    frame = None if m.frame is None else (indices[m.frame] if indices else None)
    return MatchRef(
        bank=m.bank,
        kind=m.kind,
        hash_type=m.hash_type,
        hash=m.hash,
        distance=m.distance,
        category=m.category,
        action=m.action,
        note=m.note,
        added=m.added,
        line=m.line,
        frame=frame,
        turn=m.turn,
        trimmed=m.trimmed,
    )
