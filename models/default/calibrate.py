#!/usr/bin/env python
"""Write policies/default.yaml for the default model, with thresholds calibrated on pictograms.

    python models/default/calibrate.py     # after train.py; needs only the runtime install

For each category, on a calibration split that neither training nor the tests use: the best-F1
cut falls in a gap between two scores, the lowest it keeps and the highest it leaves out. The review
threshold is the middle of that gap, and the block threshold the lowest score at which precision
reaches 0.995, but never below the lowest score the best-F1 cut keeps. A well-separated category
has a wide empty gap between its negatives and its positives; every cut in it is as good on the
calibration data, and the upper half of it, where calibration saw nothing, is left to review.
Scores come from the service's own path: JPEG -> decode -> preprocess -> ONNX encoder -> policy
scoring.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from moderator.encoders.onnx import OnnxEncoder  # noqa: E402
from moderator.media.decode import DecodeLimits  # noqa: E402
from moderator.pictograms.captions import class_prompts  # noqa: E402
from moderator.pictograms.dataset import CATEGORIES, generate  # noqa: E402
from moderator.policy import LoadedPolicy, category_scores, compile_policy  # noqa: E402
from moderator.policy.schema import Policy  # noqa: E402
from moderator.policy.score import message_scores  # noqa: E402
from moderator.processing import Processor  # noqa: E402

DESCRIPTIONS = {
    "weapons": "Knives, guns and other weapons.",
    "drugs": "Syringes, needles, pills and other drug paraphernalia.",
    "alcohol": "Bottles of beer, wine and liquor.",
    "smoking": "Cigarettes and tobacco.",
    "fire": "Fire and flames.",
}
# Natural wording: the objects' usual names (the model also learned synonyms from its captions),
# for one object and for several: the model tells counts apart, and "a photo of a bottle" alone
# misses some pictures of two bottles.
TERMS = {
    "knife": ["a knife", "a dagger", "two knives", "three knives"],
    "pistol": ["a gun", "a pistol", "a handgun", "two guns", "three guns"],
    "syringe": ["a syringe", "a needle", "two syringes", "three syringes"],
    "pill": ["a pill", "a capsule", "a tablet", "two pills", "three pills"],
    "bottle": ["a beer bottle", "a wine bottle", "a liquor bottle", "two beer bottles", "three beer bottles"],
    "cigarette": ["a cigarette", "a lit cigarette", "two cigarettes", "three cigarettes"],
    "flame": ["fire", "a flame", "two flames", "three flames"],
}
TEMPLATES = ["a photo of {}", "a drawing of {}"]
# Every other pictogram class is a contrast, by its zero-shot prompts for one, two and three objects
# (class_prompts): a category's score is the probability its prompts take among all classes
# (softmax scoring at the model's own temperature).
CONTRAST_OBJECTS = ["knife", "pistol", "syringe", "pill", "bottle", "cigarette", "flame", "tree", "house", "car", "flower", "cat", "cup", "ball", "sun"]
# Pictures of none of the classes (the model was trained with captioned ones: moderator.pictograms.nothing)
# are a contrast too, in a few of the wordings it learned, so that a plain, noisy or abstract picture
# gives its probability to them rather than to the nearest pictogram class.
NOTHING_CONTRAST = ["a blank picture", "a plain background", "random noise", "abstract shapes", "a pattern", "a blurry photo", "a picture of nothing"]
BLOCK_PRECISION = 0.995


def lowest_threshold_with_precision(scores: np.ndarray, positive: np.ndarray, precision: float) -> float | None:
    order = np.argsort(-scores)
    tp = np.cumsum(positive[order])
    prec = tp / np.arange(1, len(scores) + 1)
    ok = np.nonzero(prec >= precision)[0]
    if len(ok) == 0:
        return None
    k = ok.max()  # the deepest cut that still meets the precision
    return float(scores[order][k])


def best_f1_gap(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The best-F1 cut as (the lowest score it keeps, the highest score it leaves out)."""
    order = np.argsort(-scores)
    ranked, tp = scores[order], np.cumsum(positive[order])
    f1 = 2 * tp / (np.arange(1, len(scores) + 1) + positive.sum())
    k = int(f1.argmax())
    return float(ranked[k]), float(ranked[k + 1] if k + 1 < len(ranked) else ranked[k])


def review_and_block(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(review, block) as this module's docstring describes, each lowered by 1e-4 and rounded to 4
    decimals, so the score it was cut at still reaches it."""
    kept, left_out = best_f1_gap(scores, positive)
    block = max(lowest_threshold_with_precision(scores, positive, BLOCK_PRECISION) or kept, kept)
    return round(max((kept + left_out) / 2 - 1e-4, 0.0), 4), round(block - 1e-4, 4)


def calibrate(model_dir: Path = HERE, policy_out: Path = REPO / "policies" / "default.yaml") -> dict:
    conf = json.loads((HERE / "config.json").read_text())
    encoder = OnnxEncoder(model_dir)
    temperature = round(1.0 / encoder.info().logit_scale, 4)
    draft = Policy(
        name="default",
        model=encoder.info().model_name,
        categories=[
            {
                "name": name,
                "description": DESCRIPTIONS[name],
                **category_prompts(name),
                "scoring": "softmax",
                "temperature": temperature,
                "review": 0.0,
                "block": 0.0,
            }
            for name in CATEGORIES
        ],
    )
    compiled = compile_policy(LoadedPolicy(draft, REPO / "policies" / "default.yaml", "calibration"), encoder)
    processor = Processor(encoder, compiled, DecodeLimits())
    # The calibration split holds pictures of nothing too, in the training share: negatives of every category.
    samples = generate(conf["calibration_samples"], "calibration", conf["seed"], conf["nothing_share"])
    prepared = [processor.prepare(s.jpeg) for s in samples]
    # prepare() gives every picture its squares, [R, S, S, 3] (several for a picture that is not
    # square, media.crops: cover): concatenated, then pooled per picture as the service does.
    rows = np.concatenate([p.pixels for p in prepared])
    embeds = np.concatenate([encoder.encode_images(rows[i : i + 64]) for i in range(0, len(rows), 64)])
    # The policy's own scoring (softmax) and pooling, as the service computes them.
    scores, _ = message_scores(category_scores(embeds, compiled), compiled, [len(p.pixels) for p in prepared], [p.frames.indices for p in prepared])
    thresholds = {}
    for j, name in enumerate(compiled.categories):
        positive = np.asarray([s.obj in CATEGORIES[name] for s in samples])
        thresholds[name] = review_and_block(scores[:, j], positive)
        fired = scores[:, j] >= thresholds[name][0]
        rec, prec = (fired & positive).sum() / positive.sum(), (fired & positive).sum() / max(1, fired.sum())
        print(f"{name}: review {thresholds[name][0]} block {thresholds[name][1]} (calibration precision {prec:.3f} recall {rec:.3f})")
    write_policy(encoder.info().model_name, thresholds, conf, temperature, policy_out)
    return thresholds


def category_prompts(name: str) -> dict:
    mine = CATEGORIES[name]
    return {
        "templates": TEMPLATES,
        "terms": [t for o in mine for t in TERMS[o]],
        "contrast": [p for o in CONTRAST_OBJECTS if o not in mine for p in class_prompts(o)] + NOTHING_CONTRAST,
    }


def write_policy(model: str, thresholds: dict, conf: dict, temperature: float, out: Path) -> None:
    lines = [
        "# yaml-language-server: $schema=../docs/policy.schema.json",
        "# Default policy for models/default (pictoclip-default), the project's own pictogram CLIP.",
        f"# Thresholds written by models/default/calibrate.py from scores of {conf['calibration_samples']} calibration pictograms, per category:",
        "# review = the middle of the score gap where the best-F1 cut falls, block = the lowest score reaching",
        f"# precision {BLOCK_PRECISION} and at least the gap's top. Re-run it after retraining. The model knows pictograms only (models/default/README.md).",
        "# Scoring: softmax at the model's learned temperature, every other pictogram class (one, two, three objects) and pictures",
        "# of nothing (blank, noise, abstract: the model learned them) as a contrast, so a picture of none of the classes is allowed.",
        "name: default",
        "description: Weapons, drugs, alcohol, smoking and fire, for the default pictogram model.",
        f"model: {model}",
        "categories:",
    ]
    for name in CATEGORIES:
        review, block = thresholds[name]
        p = category_prompts(name)
        lines += [
            f"  - name: {name}",
            f"    description: {DESCRIPTIONS[name]}",
            "    scoring: softmax",
            f"    temperature: {temperature}",
            f"    templates: {json.dumps(p['templates'])}",
            f"    terms: {json.dumps(p['terms'])}",
            "    contrast:",
        ]
        lines += [f"      - {c}" for c in p["contrast"]]
        lines += [f"    review: {review}", f"    block: {block}"]
    lines += inline_tests()
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def inline_tests() -> list[str]:
    """One labelled example per category, and two benign ones (examples/, held-out pictograms)."""
    import csv

    labels = REPO / "examples" / "labels.csv"
    if not labels.is_file():
        return []
    with labels.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    chosen = [next(r for r in rows if r["categories"] == c) for c in CATEGORIES] + [r for r in rows if not r["categories"]][:2]
    out = ["tests:"]
    for r in chosen:
        if r["categories"]:
            out.append(f"  - {{image: ../examples/{r['path']}, categories: [{r['categories']}]}}")
        else:
            out.append(f"  - {{image: ../examples/{r['path']}, decision: allow, categories: []}}")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Calibrate policies/default.yaml for the default model.")
    parser.add_argument("--model", type=Path, default=HERE, help="model directory (default: models/default)")
    parser.add_argument("--out", type=Path, default=REPO / "policies" / "default.yaml", help="policy file to write (a trial: elsewhere)")
    args = parser.parse_args()
    calibrate(args.model, args.out)
