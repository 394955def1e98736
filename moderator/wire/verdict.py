"""The verdict: one JSON object per input message, on the verdict topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moderator.encoders.base import EncoderInfo
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
    score: float = Field(description="Cosine similarity between the image and the category's prompt ensemble.")
    review_threshold: float
    block_threshold: float
    action: Literal["allow", "review", "block"]
    fired: bool


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
    shadow: ShadowVerdict | None = Field(None, description="The shadow policy's decision, when one is configured. Never acted on.")
    processed_at: str = Field(description="RFC 3339 UTC time the verdict was made.")


def build_verdict(
    request: ImageRequest, decision: Decision, model: EncoderInfo, policy: CompiledPolicy, timings: Timings,
    shadow: tuple[CompiledPolicy, Decision] | None = None,
) -> Verdict:
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
            )
            for c in decision.categories
        ],
        metadata=request.metadata,
        timings=timings,
        shadow=None if shadow is None else ShadowVerdict(
            policy=PolicyRef(name=shadow[0].name, version=shadow[0].version, label=shadow[0].label),
            decision=shadow[1].decision, fired=[c.name for c in shadow[1].fired],
        ),
        processed_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
