"""Compile a policy into matrices once: prompt ensembles encoded and averaged per category."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moderator.encoders.base import Encoder
from moderator.errors import PolicyError
from moderator.policy.schema import Policy


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    version: str
    categories: tuple[str, ...]
    embeddings: np.ndarray  # float32 [C, D], rows L2-normalised
    review: np.ndarray  # float32 [C]
    block: np.ndarray  # float32 [C]


def compile_policy(policy: Policy, encoder: Encoder) -> CompiledPolicy:
    """Encode every category's prompts with the model's text encoder.

    Each category's embedding is the mean of its prompts' embeddings, re-normalised (the CLIP
    paper's prompt ensembling).

    Raises:
        PolicyError: the policy was written for another model.
        BackendError: the text encoder failed.
    """
    info = encoder.info()
    if policy.model is not None and policy.model != info.model_name:
        raise PolicyError(f"policy {policy.name!r} was written for model {policy.model!r}, but the service runs {info.model_name!r}")
    prompts = [p for c in policy.categories for p in c.prompts]
    embeds = encoder.encode_texts(prompts)
    rows, start = [], 0
    for c in policy.categories:
        mean = embeds[start : start + len(c.prompts)].mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(c.prompts)
    return CompiledPolicy(
        name=policy.name,
        version=policy.version,
        categories=tuple(c.name for c in policy.categories),
        embeddings=np.stack(rows).astype(np.float32),
        review=np.asarray([c.review for c in policy.categories], np.float32),
        block=np.asarray([c.block for c in policy.categories], np.float32),
    )
