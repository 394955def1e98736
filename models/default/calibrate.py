#!/usr/bin/env python
"""Write policies/default.yaml for the default model, with thresholds calibrated on pictograms.

    python models/default/calibrate.py     # after train.py; needs only the runtime install

For each category, on a calibration split that neither training nor the tests use, the review
threshold is the lowest score at which precision reaches ``target_precision`` (most recall at
that precision) and the block threshold the lowest at which precision reaches 0.995. Scores come
from the service's own path: JPEG -> decode -> preprocess -> ONNX encoder -> policy scoring.
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
from moderator.pictograms.dataset import CATEGORIES, generate  # noqa: E402
from moderator.policy import compile_policy  # noqa: E402
from moderator.policy.schema import Policy  # noqa: E402
from moderator.processing import Processor  # noqa: E402

PROMPTS: dict[str, tuple[str, list[str]]] = {
    "weapons": ("Knives, guns and other weapons.",
                ["a photo of a knife", "a photo of a gun", "a drawing of a pistol", "a dagger", "a handgun", "a kitchen knife"]),
    "drugs": ("Syringes, needles, pills and other drug paraphernalia.",
              ["a photo of a syringe", "a hypodermic needle", "a photo of pills", "a capsule", "medication tablets"]),
    "alcohol": ("Bottles of beer, wine and liquor.", ["a photo of a beer bottle", "a wine bottle", "a bottle of liquor"]),
    "smoking": ("Cigarettes and tobacco.", ["a photo of a cigarette", "a lit cigarette", "a tobacco cigarette"]),
    "fire": ("Fire and flames.", ["a photo of fire", "a flame", "a burning blaze"]),
}
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


def calibrate() -> dict:
    conf = json.loads((HERE / "config.json").read_text())
    encoder = OnnxEncoder(HERE)
    draft = Policy(name="default", model=encoder.info().model_name, categories=[
        {"name": name, "description": desc, "prompts": prompts, "review": 0.0, "block": 0.0} for name, (desc, prompts) in PROMPTS.items()
    ])
    compiled = compile_policy(draft, encoder)
    processor = Processor(encoder, compiled, DecodeLimits())
    samples = generate(conf["calibration_samples"], "calibration", conf["seed"])
    pixels = [processor.prepare(s.jpeg).pixels for s in samples]
    embeds = np.concatenate([encoder.encode_images(np.stack(pixels[i : i + 64])) for i in range(0, len(pixels), 64)])
    scores = embeds @ compiled.embeddings.T
    thresholds = {}
    for j, name in enumerate(compiled.categories):
        positive = np.asarray([s.obj in CATEGORIES[name] for s in samples])
        review = lowest_threshold_with_precision(scores[:, j], positive, conf["target_precision"])
        block = lowest_threshold_with_precision(scores[:, j], positive, BLOCK_PRECISION) or review
        thresholds[name] = (round(review - 1e-4, 4), round(max(block, review) - 1e-4, 4))
        fired = scores[:, j] >= thresholds[name][0]
        rec = (fired & positive).sum() / positive.sum()
        print(f"{name}: review {thresholds[name][0]} block {thresholds[name][1]} (calibration recall {rec:.3f})")
    write_policy(encoder.info().model_name, thresholds, conf)
    return thresholds


def write_policy(model: str, thresholds: dict, conf: dict) -> None:
    lines = [
        "# yaml-language-server: $schema=../docs/policy.schema.json",
        "# Default policy for models/default (pictoclip-default), the project's own pictogram CLIP.",
        "# Thresholds written by models/default/calibrate.py: per category, review = the lowest cosine score",
        f"# reaching precision {conf['target_precision']} on {conf['calibration_samples']} calibration pictograms, block = the lowest reaching",
        f"# precision {BLOCK_PRECISION}. Re-run it after retraining. The model knows pictograms only (models/default/README.md).",
        "name: default",
        "description: Weapons, drugs, alcohol, smoking and fire, for the default pictogram model.",
        f"model: {model}",
        "categories:",
    ]
    for name, (desc, prompts) in PROMPTS.items():
        review, block = thresholds[name]
        lines += [f"  - name: {name}", f"    description: {desc}", "    prompts:"]
        lines += [f"      - {p}" for p in prompts]
        lines += [f"    review: {review}", f"    block: {block}"]
    lines += inline_tests()
    (REPO / "policies" / "default.yaml").write_text("\n".join(lines) + "\n")
    print(f"wrote {REPO / 'policies' / 'default.yaml'}")


def inline_tests() -> list[str]:
    """One labelled example per category, and two benign ones (examples/, held-out pictograms)."""
    import csv

    labels = REPO / "examples" / "labels.csv"
    if not labels.is_file():
        return []
    with labels.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    chosen = [next(r for r in rows if r["categories"] == c) for c in PROMPTS] + [r for r in rows if not r["categories"]][:2]
    out = ["tests:"]
    for r in chosen:
        if r["categories"]:
            out.append(f"  - {{image: ../examples/{r['path']}, categories: [{r['categories']}]}}")
        else:
            out.append(f"  - {{image: ../examples/{r['path']}, decision: allow, categories: []}}")
    return out


if __name__ == "__main__":
    calibrate()
