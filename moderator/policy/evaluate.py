"""Evaluating a policy on labelled images, and suggesting thresholds (``moderator policy eval`` and
``calibrate``). Labels are a CSV with a ``path`` column (relative to the CSV) and a ``categories``
column (the policy categories the image belongs to, ';'-separated, empty for none), as in
examples/labels.csv."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from moderator.encoders.base import Encoder
from moderator.errors import PolicyError
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import category_scores, message_scores

log = logging.getLogger(__name__)


class ImageScorer(Protocol):
    """What evaluation needs from the pipeline (its ``Processor``): decode and preprocess one
    image (``prepare`` returns an object with ``pixels`` and ``error``), and the encoder."""

    encoder: Encoder

    def prepare(self, data: bytes) -> Any: ...


@dataclass(frozen=True)
class Labelled:
    paths: list[Path]
    truth: np.ndarray  # bool [N, C]
    scores: np.ndarray  # float [N, C]
    skipped: list[tuple[Path, str]]


def load_labels(csv_path: Path, categories: tuple[str, ...]) -> tuple[list[Path], np.ndarray]:
    """Raises PolicyError for a malformed file or categories the policy lacks."""
    try:
        with csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise PolicyError(f"{csv_path}: {exc.strerror or exc}") from exc
    if not rows or not {"path", "categories"} <= set(rows[0]):
        raise PolicyError(f"{csv_path}: needs a header with 'path' and 'categories' columns and at least one row")
    paths, truth = [], []
    for i, row in enumerate(rows, start=2):
        labels = {c for c in (row["categories"] or "").split(";") if c}
        unknown = labels - set(categories)
        if unknown:
            raise PolicyError(f"{csv_path}:{i}: categories {sorted(unknown)} are not in the policy ({', '.join(categories)})")
        paths.append(csv_path.parent / row["path"])
        truth.append([c in labels for c in categories])
    return paths, np.asarray(truth, bool)


def score_labelled(csv_path: Path, processor: ImageScorer, policy: CompiledPolicy, batch: int = 32) -> Labelled:
    paths, truth = load_labels(csv_path, policy.categories)
    keep, pixels, groups, skipped = [], [], [], []
    for i, p in enumerate(paths):
        try:
            prepared = processor.prepare(p.read_bytes())
        except OSError as exc:
            skipped.append((p, exc.strerror or str(exc)))
            continue
        if prepared.error is not None:
            skipped.append((p, str(prepared.error)))
            continue
        keep.append(i)
        pixels.append(prepared.pixels)
        groups.append(prepared.frames.indices if getattr(prepared, "frames", None) is not None else None)
    if not pixels:
        raise PolicyError(f"{csv_path}: no labelled image could be read")
    frames = np.concatenate([p if p.ndim == 4 else p[None] for p in pixels])  # every kept frame of every image
    counts = [len(p) if p.ndim == 4 else 1 for p in pixels]
    embeds = np.concatenate([processor.encoder.encode_images(frames[i : i + batch]) for i in range(0, len(frames), batch)])
    scores, _ = message_scores(category_scores(embeds, policy), policy, counts, groups)  # the service's pooling and aggregation
    return Labelled([paths[i] for i in keep], truth[keep], scores, skipped)


def confusion(truth: np.ndarray, fired: np.ndarray) -> dict[str, int]:
    return {"tp": int((truth & fired).sum()), "fp": int((~truth & fired).sum()), "fn": int((truth & ~fired).sum()), "tn": int((~truth & ~fired).sum())}


def prf(c: dict[str, int]) -> tuple[float, float, float]:
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def report(data: Labelled, policy: CompiledPolicy) -> dict:
    """Per category: confusion at the review threshold (the category fires) and at the block threshold."""
    out: dict[str, Any] = {"images": len(data.paths), "skipped": [{"path": str(p), "reason": r} for p, r in data.skipped], "categories": {}}
    for j, name in enumerate(policy.categories):
        cat: dict[str, Any] = {}
        for level, threshold in (("fires", float(policy.review[j])), ("blocks", float(policy.block[j]))):
            c = confusion(data.truth[:, j], data.scores[:, j] >= threshold)
            p, r, f = prf(c)
            cat[level] = {"threshold": threshold, **c, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
        cat["positives"] = int(data.truth[:, j].sum())
        out["categories"][name] = cat
    return out


def pr_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall), thresholds descending: one point per *distinct* score,
    with the figures a rule ``score >= threshold`` really gets there. Equal scores fire together
    (they are one threshold, as in scikit-learn's ``precision_recall_curve``): softmax scores at
    a low temperature tie at 1.0, and counting tied images one by one reported precision that
    no threshold delivers."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    tp = np.cumsum(t)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.empty(0, int)  # last index of each distinct score
    fired = last + 1
    return s[last], tp[last] / fired, tp[last] / max(1, int(t.sum()))


def suggest(scores: np.ndarray, truth: np.ndarray, target_precision: float, edge: bool = False) -> tuple[float, float, float] | None:
    """Lowest threshold (most recall) whose precision is at least the target; (threshold, P, R),
    P and R being what ``score >= threshold`` gets on these scores. The threshold sits in the
    middle of the gap below the last score that fires, or, with ``edge``, at that score itself
    (the block threshold: a score in the gap is then reviewed, not blocked)."""
    thresholds, precision, recall = pr_curve(scores, truth)
    ok = np.nonzero(precision >= target_precision)[0]
    if not len(ok) or np.asarray(truth).sum() == 0:
        return None
    k = ok.max()
    # Halfway to the next lower score (nothing lies between, so the same images fire), so small
    # score noise does not flip the boundary image; written with as few decimals as keep that so.
    below = thresholds[k + 1] if k + 1 < len(thresholds) else thresholds[k] - 1e-3
    at = (
        _short((thresholds[k] + below) / 2, float(below), float(thresholds[k]))
        if not edge
        else _short(float(thresholds[k]), float(below), float(thresholds[k]), down=True)
    )
    return at, float(precision[k]), float(recall[k])


def _short(value: float, above: float, at_most: float, down: bool = False) -> float:
    """``value`` rounded (``down``: never up) to the fewest decimals that keep it in
    ``(above, at_most]``: the policy file shows a short number that fires the same images."""
    import math

    for decimals in range(2, 10):
        r = math.floor(value * 10**decimals) / 10**decimals if down else round(value, decimals)
        if above < r <= at_most:
            return r
    return float(value)


def draw_pr_curves(data: Labelled, policy: CompiledPolicy, path: Path, size: int = 640) -> None:
    """One precision-recall curve per category, as a PNG."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = 50
    box = (m, m // 2, size - m // 2, size - m)
    d.rectangle(box, outline=(0, 0, 0))
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = box[0] + v * (box[2] - box[0])
        y = box[3] - v * (box[3] - box[1])
        d.line([(x, box[3]), (x, box[3] + 4)], fill=(0, 0, 0))
        d.text((x - 8, box[3] + 8), f"{v:.2f}", fill=(0, 0, 0))
        d.line([(box[0] - 4, y), (box[0], y)], fill=(0, 0, 0))
        d.text((4, y - 6), f"{v:.2f}", fill=(0, 0, 0))
    d.text(((box[0] + box[2]) // 2 - 20, size - 22), "recall", fill=(0, 0, 0))
    d.text((4, 4), "precision", fill=(0, 0, 0))
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]
    for j, name in enumerate(policy.categories):
        colour = palette[j % len(palette)]
        if data.truth[:, j].sum():
            _, p, r = pr_curve(data.scores[:, j], data.truth[:, j])
            pts = [(box[0] + ri * (box[2] - box[0]), box[3] - pi * (box[3] - box[1])) for pi, ri in zip(p, r)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
        d.rectangle([box[0] + 10, box[1] + 10 + 16 * j, box[0] + 22, box[1] + 22 + 16 * j], fill=colour)
        d.text((box[0] + 28, box[1] + 10 + 16 * j), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
