#!/usr/bin/env python
"""What ``media.crops: cover`` buys and costs against ``centre``, side by side in one run.

    python benchmarks/crops.py [--json] [--pictures 6] [--model DIR --policy FILE]

With the default model and policy (or another pair), through the service's own path
(``Processor.prepare``: decode, frame selection, the squares; ``score_prepared``: encode, pool,
score):

- evasion: a moderated pictogram (knife, pistol, syringe, pill, bottle, cigarette, flame) drawn
  as a square at one end of a wide or tall benign picture (16:9, 2:1, 9:16; tests/wide.py): share
  flagged (review or block) with each mode, and the share the same square is flagged alone;
- false positives: benign pictograms (one to three of tree, house, car, flower, cat, cup, ball,
  sun) on pictures of 4:3, 16:9, 2:1 and 9:16: share flagged with each mode;
- cost: squares per image, and CPU milliseconds per image to prepare and to encode and score, for
  640x480 and 1280x720 JPEG photos-like scenes (tests/scenes.py), one thread, process CPU time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moderator import bundled  # noqa: E402
from moderator.encoders.onnx import OnnxEncoder  # noqa: E402
from moderator.media.decode import DecodeLimits  # noqa: E402
from moderator.pictograms.dataset import BENIGN, MODERATED  # noqa: E402
from moderator.policy import compile_policy, load_policy  # noqa: E402
from moderator.processing import Processor  # noqa: E402
from tests.scenes import encode, scene  # noqa: E402
from tests.wide import ENDS, SHAPES, at_an_end, benign  # noqa: E402

MODES = ("centre", "cover")


def flagged(processor: Processor, images: list[bytes]) -> float:
    prepared = [processor.prepare(b) for b in images]
    assert not [p.error for p in prepared if p.error is not None]
    decisions = [d for i in range(0, len(prepared), 64) for d in processor.score_prepared(prepared[i : i + 64]).decisions]
    return sum(d.decision != "allow" for d in decisions) / len(decisions)


def quality(processors: dict[str, Processor], pictures: int) -> dict:
    rng = random.Random(2026)
    pairs = [at_an_end(obj, size, rng) for obj in MODERATED for size in ENDS for _ in range(pictures)]
    attacks, alone = [p for p, _ in pairs], [s for _, s in pairs]
    plain = [benign(size, rng) for size in SHAPES for _ in range(pictures * len(BENIGN))]
    return {
        "attack_pictures": len(attacks),
        "attack_square_alone_flagged": round(flagged(processors["centre"], alone), 3),
        **{f"attack_flagged_{m}": round(flagged(p, attacks), 3) for m, p in processors.items()},
        "benign_pictures": len(plain),
        **{f"benign_flagged_{m}": round(flagged(p, plain), 3) for m, p in processors.items()},
    }


def cost(processors: dict[str, Processor], images: int) -> dict:
    out: dict = {}
    for size in ((640, 480), (1280, 720)):
        data = [encode(scene(i, size), "JPEG", quality=90) for i in range(images)]
        for mode, processor in processors.items():
            processor.score_prepared([processor.prepare(data[0])])  # warm-up
            start = time.process_time()
            prepared = [processor.prepare(b) for b in data]
            mid = time.process_time()
            processor.score_prepared(prepared)
            end = time.process_time()
            key = f"{size[0]}x{size[1]}_{mode}"
            out[key] = {
                "squares": len(prepared[0].pixels),
                "prepare_ms": round((mid - start) * 1e3 / images, 2),
                "encode_score_ms": round((end - mid) * 1e3 / images, 2),
            }
        a, b = out[f"{size[0]}x{size[1]}_centre"], out[f"{size[0]}x{size[1]}_cover"]
        out[f"{size[0]}x{size[1]}_cover_over_centre"] = {
            "prepare": round(b["prepare_ms"] / a["prepare_ms"], 2),
            "encode_score": round(b["encode_score_ms"] / a["encode_score_ms"], 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pictures", type=int, default=6, help="pictures per object and size")
    parser.add_argument("--images", type=int, default=24, help="photo-like JPEGs per size for the cost")
    parser.add_argument("--model", type=Path, help="model directory (default: the default model)")
    parser.add_argument("--policy", type=Path, help="its policy (default: the default policy)")
    args = parser.parse_args()
    encoder = OnnxEncoder(args.model or bundled.model_dir(), intra_op_threads=1)
    policy = compile_policy(load_policy(args.policy or bundled.policy_path()), encoder)
    processors = {m: Processor(encoder, policy, DecodeLimits(), crops=m) for m in MODES}
    out = {"model": encoder.info().model_name, "input": encoder.info().preprocess.image_size}
    out["quality"] = quality(processors, args.pictures)
    out["cost"] = cost(processors, args.images)
    if args.json:
        print(json.dumps(out))
        return
    q = out["quality"]
    print(f"{out['model']} (input {out['input']})")
    print(
        f"moderated square at one end of a wide or tall picture ({q['attack_pictures']}): flagged centre {q['attack_flagged_centre']:.1%},"
        f" cover {q['attack_flagged_cover']:.1%} (the square alone: {q['attack_square_alone_flagged']:.1%})"
    )
    print(f"benign pictures ({q['benign_pictures']}): flagged centre {q['benign_flagged_centre']:.1%}, cover {q['benign_flagged_cover']:.1%}")
    for key, row in out["cost"].items():
        print(f"{key}: {row}")


if __name__ == "__main__":
    main()
