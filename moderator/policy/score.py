"""Scoring: a pure function of image embeddings and a compiled policy (formulas: docs/policies.md).

Per category, by its scoring mode (x the image embedding, c the prompt-ensemble embedding):

- cosine: ``x·c``; with example images, the maximum of that and ``x·e`` over the examples;
- softmax: the probability mass the category's prompts take in
  ``softmax([x·p_1 … x·p_P, x·k_1 … x·k_K] / temperature)`` against its contrast prompts k;
- sigmoid: ``sigmoid(logit_scale · x·c + logit_bias)`` with the model's calibration (SigLIP).

A message is a sequence of frames (a still image is one): every kept frame is scored, and a
frame scored as several squares (the crops of a frame that is not square, its renderings over a
light and a dark page) scores, per category, the highest of its squares: they are parts or looks
of one picture. A category's ``aggregate`` makes its score from the frame scores: ``max``
(default: one frame is enough to fire it), ``mean``, or ``k_of_n`` (the highest level that k of
some n consecutive frames reach, so the category fires only when k of n consecutive frames are
over its threshold; a message of fewer than n frames is one window, and needs min(k, frames) of
them). The result names the deciding row (for mean, the highest-scoring frame's). When not all of
a message was scored (more distinct frames than ``media.max_frames``, a video whose decoding
stopped early, or a frame too long for ``media.max_crops`` squares to cover),
``frames.on_overflow`` decides: ``review`` (default) makes the decision at least review,
``reject`` blocks, ``sample`` keeps the decision of what was scored.

Action: ``block`` at or above the block threshold (if the category may block), ``review`` at or
above the review threshold, else ``allow``. Decision: the most severe action over categories; with
``decision.escalate_reviews: N``, N or more reviews make a block. Reasons list fired categories by
action, then severity, then margin over the threshold, then name: deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moderator.policy.compile import CompiledCategory, CompiledPolicy

ACTIONS: tuple[str, ...] = ("allow", "review", "block")  # index = severity of the action
Groups = Sequence[Sequence[int] | None]  # per message: the frame of each of its rows (None: a row per frame)


@dataclass(frozen=True)
class CategoryResult:
    name: str
    score: float
    review: float
    block: float
    action: str
    fired: bool
    severity: int = 0
    frame: int = 0  # position, among the message's scored rows (squares), of the one that gave the score

    @property
    def threshold(self) -> float:
        """The threshold of the action taken (the review threshold when nothing fired)."""
        return self.block if self.action == "block" else self.review

    @property
    def margin(self) -> float:
        return self.score - self.threshold


@dataclass(frozen=True)
class Decision:
    decision: str
    categories: tuple[CategoryResult, ...]
    escalated: bool = False
    frames: int = 1  # frames scored
    overflow: str | None = None  # the on_overflow rule applied, when not all of the message was scored

    @property
    def fired(self) -> list[CategoryResult]:
        return sorted((c for c in self.categories if c.fired), key=lambda c: (-ACTIONS.index(c.action), -c.severity, -c.margin, c.name))

    @property
    def reasons(self) -> list[str]:
        """Fired categories in words, in the deterministic order above."""
        out = [f"{c.name}: score {c.score:.3f} >= {c.action} threshold {c.threshold:.3f}" for c in self.fired]
        if self.escalated:
            out.append(f"{sum(c.action == 'review' for c in self.categories)} categories ask for review: escalated to block")
        if self.overflow in ("review", "reject"):
            scored = f"{self.frames} frame{'s' if self.frames != 1 else ''} {'were' if self.frames != 1 else 'was'}"
            out.append(f"not every frame, or not every part of one, was scored ({scored}): {self.decision} (frames.on_overflow: {self.overflow})")
        return out


def category_scores(image_embeds: np.ndarray, policy: CompiledPolicy) -> np.ndarray:
    """``[N, C]`` scores of every category, by its scoring mode."""
    if image_embeds.ndim != 2 or image_embeds.shape[1] != policy.embeddings.shape[1]:
        raise ValueError(f"embeddings {image_embeds.shape} do not match the policy's dimension {policy.embeddings.shape[1]}")
    x = image_embeds.astype(np.float32)
    scores = x @ policy.embeddings.T
    for j, e in enumerate(policy.entries):
        if e.scoring == "cosine" and e.prototypes is not None:
            scores[:, j] = np.maximum(scores[:, j], (x @ e.prototypes.T).max(axis=1))
        elif e.scoring == "softmax":
            scores[:, j] = _softmax_mass(x, e)
        elif e.scoring == "sigmoid":
            scores[:, j] = 1.0 / (1.0 + np.exp(-(policy.logit_scale * scores[:, j] + (policy.logit_bias or 0.0))))
    return scores


def _softmax_mass(x: np.ndarray, e: CompiledCategory) -> np.ndarray:
    cands = e.prompt_embeddings if e.contrast_embeddings is None else np.concatenate([e.prompt_embeddings, e.contrast_embeddings])
    logits = (x @ cands.T) / e.temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p[:, : len(e.prompts)].sum(axis=1)


def score(image_embeds: np.ndarray, policy: CompiledPolicy) -> list[Decision]:
    """Decisions for a batch of L2-normalised image embeddings ``[N, D]``, one image each."""
    return score_frames(image_embeds, policy, [1] * len(image_embeds))


def score_frames(
    frame_embeds: np.ndarray, policy: CompiledPolicy, frames: list[int], overflow: list[bool] | None = None, groups: Groups | None = None
) -> list[Decision]:
    """Decisions for messages of several frames: ``frame_embeds`` ``[sum(frames), D]`` holds the
    rows of message i as the next ``frames[i]`` rows; ``overflow[i]`` says not all of it was
    scored; ``groups[i]``, the frame (its index in the file) of each of its rows (None: a row per
    frame). Category scores are aggregated by :func:`message_scores`."""
    scores, deciding = message_scores(category_scores(frame_embeds, policy), policy, frames, groups)
    may_block = np.asarray([e.action == "block" for e in policy.entries] or [True] * len(policy.categories))
    severity = np.where((scores >= policy.block) & may_block, 2, np.where(scores >= policy.review, 1, 0))
    sev = [e.severity for e in policy.entries] or [0] * len(policy.categories)
    decisions = []
    overflow = overflow or [False] * len(frames)
    for i, (row_scores, row_act, row_frame) in enumerate(zip(scores.tolist(), severity.tolist(), deciding.tolist())):
        cats = tuple(
            CategoryResult(
                name=name, score=s, review=float(policy.review[j]), block=float(policy.block[j]), action=ACTIONS[a], fired=a > 0, severity=sev[j], frame=int(f)
            )
            for j, (name, s, a, f) in enumerate(zip(policy.categories, row_scores, row_act, row_frame))
        )
        top = max(row_act)
        escalated = top == 1 and policy.escalate_reviews is not None and row_act.count(1) >= policy.escalate_reviews
        decision = "block" if escalated else ACTIONS[top]
        rule = policy.on_overflow if overflow[i] else None
        floor = {"review": "review", "reject": "block"}.get(rule or "")
        if floor is not None and ACTIONS.index(floor) > ACTIONS.index(decision):
            decision = floor
        scored = frames[i] if not groups or groups[i] is None else len(_runs(groups[i]))
        decisions.append(Decision(decision=decision, categories=cats, escalated=escalated, frames=scored, overflow=rule))
    return decisions


def message_scores(per_frame: np.ndarray, policy: CompiledPolicy, frames: list[int], groups: Groups | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[sum(frames), C]`` row scores -> ``[N, C]`` message scores by each category's
    ``aggregate``, and the deciding row of each (its position among the message's rows). With
    ``groups`` (as :func:`score_frames`), the rows of one frame are first pooled to their highest
    score per category. Used by the service and by evaluation alike, so calibration sees the
    service's scores.

    Raises:
        ValueError: the row counts do not add up, or a message's groups do not match its rows.
    """
    if any(n < 1 for n in frames) or sum(frames) != len(per_frame):
        raise ValueError(f"frame counts {frames} do not add up to the {len(per_frame)} embeddings")
    if groups is not None and (len(groups) != len(frames) or any(g is not None and len(g) != n for g, n in zip(groups, frames))):
        raise ValueError(f"frame groups do not match the frame counts {frames}")
    if all(n == 1 for n in frames):  # stills of one square: every rule gives the frame's own score
        return per_frame, np.zeros(per_frame.shape, int)
    rules = [(e.aggregate, e.k, e.n) for e in policy.entries] or [("max", 1, 1)] * len(policy.categories)
    starts = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(int)
    out_scores, out_rows = [], []
    for i, (a, n) in enumerate(zip(starts, frames)):
        rows = per_frame[a : a + n]
        group = groups[i] if groups is not None else None
        if group is None:
            scores, deciding = _aggregate(rows, rules)
        else:
            pooled, best = _pool(rows, _runs(group))
            scores, at = _aggregate(pooled, rules)
            deciding = best[at, np.arange(len(at))]
        out_scores.append(scores)
        out_rows.append(deciding)
    return np.stack(out_scores), np.stack(out_rows)


def _runs(group) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of equal consecutive values: the rows of one frame."""
    starts = [0] + [r for r in range(1, len(group)) if group[r] != group[r - 1]]
    return list(zip(starts, starts[1:] + [len(group)]))


def _pool(rows: np.ndarray, runs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``[R, C]`` row scores -> ``[F, C]``: per frame (run of rows) and category the highest, and
    the row it came from."""
    best = np.stack([a + rows[a:b].argmax(axis=0) for a, b in runs])
    return np.take_along_axis(rows, best, axis=0), best


def _aggregate(frames: np.ndarray, rules: list[tuple[str, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """One message's ``[F, C]`` frame scores -> ``[C]`` scores and the deciding frame of each."""
    count = len(frames)
    scores = np.empty(frames.shape[1], np.float32)
    deciding = np.empty(frames.shape[1], int)
    for j, (rule, k, n) in enumerate(rules):
        column = frames[:, j]
        if rule == "k_of_n" and count > 1:
            width = min(n, count)
            need = min(k, width)
            windows = np.lib.stride_tricks.sliding_window_view(column, width)  # [W, width]
            order = np.argsort(-windows, axis=1, kind="stable")[:, need - 1]  # the need-th highest of each window
            levels = windows[np.arange(len(windows)), order]
            best = int(levels.argmax())
            scores[j], deciding[j] = levels[best], best + order[best]
        elif rule == "mean":
            scores[j], deciding[j] = column.mean(), column.argmax()
        else:
            scores[j], deciding[j] = column.max(), column.argmax()
    return scores, deciding


@dataclass(frozen=True)
class PromptScore:
    prompt: str
    cosine: float
    contrast: bool = False


def explain(image_embed: np.ndarray, policy: CompiledPolicy) -> list[tuple[CategoryResult, list[PromptScore]]]:
    """Per category: its result and the cosine of the image with each of its prompts."""
    decision = score(image_embed[None], policy)[0]
    out = []
    for result, e in zip(decision.categories, policy.entries):
        prompts = [PromptScore(p, float(image_embed @ v)) for p, v in zip(e.prompts, e.prompt_embeddings)]
        if e.contrast_embeddings is not None:
            prompts += [PromptScore(p, float(image_embed @ v), True) for p, v in zip(e.contrast, e.contrast_embeddings)]
        out.append((result, sorted(prompts, key=lambda s: -s.cosine)))
    return out
