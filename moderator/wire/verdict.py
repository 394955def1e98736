"""The verdict: one JSON object per input message, on the verdict topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moderator.encoders.base import EncoderInfo
from moderator.media.frames import FrameSet
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import Decision
from moderator.wire.input import ImageRequest

SCHEMA_VERSION = 1


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
    score: float = Field(description="The category's score (cosine similarity, or a probability under softmax/sigmoid scoring): its highest over the scored frames.")
    review_threshold: float
    block_threshold: float
    action: Literal["allow", "review", "block"]
    fired: bool
    frame: int | None = Field(None, description="Animated images: the frame number (from 0, in the file) that gave the score.")
    frame_timestamp_ms: int | None = Field(None, description="Animated images: when that frame is first shown, ms from the start.")


class FramesRef(_Model):
    total: int = Field(description="Frames in the file.")
    distinct: int = Field(description="Frames that differ visibly from the frames before them.")
    scored: int = Field(description="Frames encoded and scored.")
    overflow: Literal["review", "reject", "sample"] | None = Field(
        None, description="Set when there were more distinct frames than media.max_frames: the policy's frames.on_overflow rule applied.")


class Timings(_Model):
    decode_ms: float = Field(description="Decode and preprocess of this image.")
    queue_ms: float = Field(description="From poll to the start of its batch's encoder call.")
    encode_ms: float = Field(description="Its batch's encoder call.")
    score_ms: float = Field(description="Its batch's scoring.")
    batch_size: int


class Verdict(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", title="ModeratorVerdict")

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    source: SourceRef
    model: ModelRef
    policy: PolicyRef
    decision: Literal["allow", "review", "block"]
    reasons: list[str] = Field(description="Fired categories, most severe first, in words.")
    categories: list[CategoryVerdict]
    metadata: dict[str, Any] = Field(description="Input headers (raw images) or envelope metadata, passed through.")
    timings: Timings
    frames: FramesRef | None = Field(None, description="Animated and multi-image files: how many frames there were and how many were scored; null for a still image.")
    shadow: ShadowVerdict | None = Field(None, description="The shadow policy's decision, when one is configured. Never acted on.")
    processed_at: str = Field(description="RFC 3339 UTC time the verdict was made.")


def build_verdict(
    request: ImageRequest, decision: Decision, model: EncoderInfo, policy: CompiledPolicy, timings: Timings,
    shadow: tuple[CompiledPolicy, Decision] | None = None, frames: FrameSet | None = None,
) -> Verdict:
    animated = frames is not None and frames.animated
    src = request.source
    return Verdict(
        id=request.id,
        source=SourceRef(topic=src.topic, partition=src.partition, offset=src.offset, timestamp=src.timestamp_ms),
        model=ModelRef(name=model.model_name, checksum=model.model_checksum, precision=model.precision, backend=model.backend),
        policy=PolicyRef(name=policy.name, version=policy.version, label=policy.label),
        decision=decision.decision,
        reasons=decision.reasons,
        categories=[
            CategoryVerdict(
                name=c.name, score=round(c.score, 6), review_threshold=c.review, block_threshold=c.block,
                action=c.action, fired=c.fired,
                frame=frames.indices[c.frame] if animated else None,
                frame_timestamp_ms=frames.timestamps_ms[c.frame] if animated else None,
            )
            for c in decision.categories
        ],
        metadata=request.metadata,
        timings=timings,
        frames=FramesRef(total=frames.total, distinct=frames.distinct, scored=len(frames.indices), overflow=decision.overflow)
        if animated else None,
        shadow=None if shadow is None else ShadowVerdict(
            policy=PolicyRef(name=shadow[0].name, version=shadow[0].version, label=shadow[0].label),
            decision=shadow[1].decision, fired=[c.name for c in shadow[1].fired],
        ),
        processed_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
