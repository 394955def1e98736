"""Compile a policy once into matrices: prompt ensembles, contrast prompts and example prototypes
encoded with the model's own encoders (text embeddings through an on-disk cache)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderator.encoders.base import Encoder
from moderator.errors import MessageError, PolicyError
from moderator.policy.cache import EmbeddingCache
from moderator.policy.loader import LoadedPolicy
from moderator.policy.schema import resolve


@dataclass(frozen=True)
class CompiledCategory:
    name: str
    scoring: str
    temperature: float
    review: float
    block: float
    action: str
    severity: int
    prompts: tuple[str, ...]
    prompt_embeddings: np.ndarray  # [P, D]
    ensemble: np.ndarray  # [D]: mean of the prompt embeddings, re-normalised
    contrast: tuple[str, ...] = ()
    contrast_embeddings: np.ndarray | None = None  # [K, D]
    prototypes: np.ndarray | None = None  # [E, D]: example image embeddings
    aggregate: str = "max"  # max | mean | k_of_n, over a message's scored frames
    k: int = 1
    n: int = 1


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    version: str  # content hash of the file
    categories: tuple[str, ...]
    embeddings: np.ndarray  # [C, D] ensembles
    review: np.ndarray  # [C]
    block: np.ndarray  # [C]
    entries: tuple[CompiledCategory, ...] = ()
    label: str = ""
    escalate_reviews: int | None = None
    logit_scale: float = 100.0
    logit_bias: float | None = None
    tests: tuple = field(default=())
    on_overflow: str = "review"  # frames.on_overflow: what more distinct frames than were scored means


def _normalise(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def compile_policy(loaded: LoadedPolicy, encoder: Encoder, cache: EmbeddingCache | None = None) -> CompiledPolicy:
    """Encode every prompt, contrast prompt and example image of the policy.

    Raises:
        PolicyError: the policy was written for another model, needs a model feature it lacks
            (sigmoid scoring without a logit bias), or an example image is unusable.
        BackendError: the encoder failed.
    """
    policy, info = loaded.policy, encoder.info()
    if policy.model is not None:
        if policy.model.name != info.model_name:
            raise PolicyError(f"{loaded.path}: policy {policy.name!r} was written for model {policy.model.name!r}, but the service runs {info.model_name!r}")
        if policy.model.checksum and policy.model.checksum != info.model_checksum:
            raise PolicyError(f"{loaded.path}: policy expects model checksum {policy.model.checksum}, the service runs {info.model_checksum}")
    cache = cache or EmbeddingCache(None, info.model_checksum)
    texts = []
    for c in policy.categories:
        texts += c.all_prompts() + list(c.contrast)
    embeds = cache.encode(encoder, texts)
    entries = []
    for c in policy.categories:
        r = resolve(c, policy.defaults)
        if r.scoring == "sigmoid" and info.logit_bias is None:
            raise PolicyError(
                f"{loaded.path}: category {c.name!r} uses sigmoid scoring, which needs a sigmoid-trained model "
                f"(SigLIP) with a logit bias; {info.model_name} has none: use cosine or softmax"
            )
        prompts = tuple(c.all_prompts())
        p_emb = np.stack([embeds[t] for t in prompts])
        entries.append(
            CompiledCategory(
                name=c.name,
                scoring=r.scoring,
                temperature=r.temperature,
                review=float(r.review),  # type: ignore[arg-type]  # validation requires both thresholds
                block=float(r.block),  # type: ignore[arg-type]
                action=c.action,
                severity=c.severity,
                prompts=prompts,
                prompt_embeddings=p_emb,
                ensemble=_normalise(p_emb.mean(axis=0)),
                contrast=tuple(c.contrast),
                contrast_embeddings=np.stack([embeds[t] for t in c.contrast]) if c.contrast else None,
                prototypes=_prototypes(loaded.path.parent, c.examples, encoder) if c.examples else None,
                aggregate=r.aggregate,
                k=r.k,
                n=r.n,
            )
        )
    return CompiledPolicy(
        name=policy.name,
        version=loaded.digest,
        label=policy.version,
        categories=tuple(e.name for e in entries),
        embeddings=np.stack([e.ensemble for e in entries]),
        review=np.asarray([e.review for e in entries], np.float32),
        block=np.asarray([e.block for e in entries], np.float32),
        entries=tuple(entries),
        escalate_reviews=policy.decision.escalate_reviews,
        logit_scale=info.logit_scale,
        logit_bias=info.logit_bias,
        tests=tuple(policy.tests),
        on_overflow=policy.frames.on_overflow,
    )


def _prototypes(base: Path, paths: list[str], encoder: Encoder) -> np.ndarray:
    from moderator.media.decode import DecodeLimits, decode_image
    from moderator.media.preprocess import Preprocessor

    pre = Preprocessor(encoder.info().preprocess)
    pixels = []
    for rel in paths:
        path = base / rel
        try:
            pixels.append(pre(decode_image(path.read_bytes(), DecodeLimits())))
        except OSError as exc:
            raise PolicyError(f"example image {path}: {exc.strerror or exc}") from exc
        except MessageError as exc:
            raise PolicyError(f"example image {path}: {exc}") from exc
    return encoder.encode_images(np.stack(pixels))
