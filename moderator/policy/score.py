"""Scoring: a pure function of image embeddings and a compiled policy.

Per category: cosine similarity between the image and the category's ensemble embedding; at or
above ``block`` the category blocks, at or above ``review`` it asks for review. The verdict's
decision is the most severe category action (block > review > allow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moderator.policy.compile import CompiledPolicy

ACTIONS: tuple[str, ...] = ("allow", "review", "block")  # index = severity


@dataclass(frozen=True)
class CategoryResult:
    name: str
    score: float
    review: float
    block: float
    action: str
    fired: bool


@dataclass(frozen=True)
class Decision:
    decision: str
    categories: tuple[CategoryResult, ...]

    @property
    def reasons(self) -> list[str]:
        """Fired categories, most severe and highest score first, for people reading a verdict."""
        fired = sorted((c for c in self.categories if c.fired), key=lambda c: (-ACTIONS.index(c.action), -c.score))
        return [
            f"{c.name}: score {c.score:.3f} >= {c.action} threshold {c.block if c.action == 'block' else c.review:.3f}"
            for c in fired
        ]


def score(image_embeds: np.ndarray, policy: CompiledPolicy) -> list[Decision]:
    """Decisions for a batch of L2-normalised image embeddings ``[N, D]``."""
    if image_embeds.ndim != 2 or image_embeds.shape[1] != policy.embeddings.shape[1]:
        raise ValueError(f"embeddings {image_embeds.shape} do not match the policy's dimension {policy.embeddings.shape[1]}")
    scores = image_embeds.astype(np.float32) @ policy.embeddings.T  # [N, C]
    severity = np.where(scores >= policy.block, 2, np.where(scores >= policy.review, 1, 0))
    decisions = []
    for row_scores, row_sev in zip(scores.tolist(), severity.tolist()):
        cats = tuple(
            CategoryResult(
                name=name, score=s, review=float(policy.review[j]), block=float(policy.block[j]),
                action=ACTIONS[sev], fired=sev > 0,
            )
            for j, (name, s, sev) in enumerate(zip(policy.categories, row_scores, row_sev))
        )
        decisions.append(Decision(decision=ACTIONS[max(row_sev)], categories=cats))
    return decisions
