#!/usr/bin/env python
"""The fast decode path (media.fast_decode) against the exact one, side by side in one run.

    python benchmarks/decode.py [--json] [--images 24]

For photo-like JPEGs (tests/scenes.py) and large pictograms at several sizes, through the
service's own ``Processor.prepare`` (decode, frame selection, PDQ, preprocess) with the default
model: CPU milliseconds per image on each path and their ratio; the cosine between the default
model's embeddings of the two paths' pixels (min and median); the PDQ distance between the two
paths' hashes (max and mean; banks are matched within 31 bits); and whether the default policy's
decision on each large pictogram is the same on both paths. Then the same with PDQ off, where
nothing holds the decode above 512 px. Timings are process CPU time (``time.process_time``), one
thread, so they compare the paths rather than the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moderator import bundled  # noqa: E402
from moderator.encoders.onnx import OnnxEncoder  # noqa: E402
from moderator.hashing.compute import hamming  # noqa: E402
from moderator.media.decode import DecodeLimits  # noqa: E402
from moderator.pictograms.draw import render  # noqa: E402
from moderator.policy import compile_policy, load_policy  # noqa: E402
from moderator.processing import KnownContentOptions, Processor  # noqa: E402
from tests.scenes import encode, scene  # noqa: E402

SIZES = ((640, 480), (1280, 960), (1920, 1080), (4000, 3000))
OBJECTS = ("knife", "pistol", "syringe", "pill", "bottle", "cigarette", "flame", "tree", "cup", "ball")


def pictogram(i: int, size: tuple[int, int]) -> bytes:
    img = render(OBJECTS[i % len(OBJECTS)], "black" if i % 3 else "red", 1 + i % 2, "beige", random.Random(i), size)
    return encode(img, "JPEG", quality=85)


def run(processor: Processor, images: list[bytes]) -> tuple[float, list]:
    start = time.process_time()
    prepared = [processor.prepare(b) for b in images]
    ms = (time.process_time() - start) * 1e3 / len(images)
    assert not [p.error for p in prepared if p.error is not None]
    return ms, prepared


def compare(encoder, policy, images: list[bytes], pdq: bool, decide: bool) -> dict:
    exact = Processor(encoder, policy, DecodeLimits(), known=KnownContentOptions(pdq=pdq), fast_decode=False)
    fast = Processor(encoder, policy, DecodeLimits(), known=KnownContentOptions(pdq=pdq), fast_decode=True)
    run(exact, images[:2]), run(fast, images[:2])  # warm-up
    exact_ms, a = run(exact, images)
    fast_ms, b = run(fast, images)
    ea = encoder.encode_images(np.concatenate([p.pixels for p in a]))
    eb = encoder.encode_images(np.concatenate([p.pixels for p in b]))
    cos = (ea * eb).sum(axis=1)
    row = {
        "exact_ms_per_image": round(exact_ms, 2),
        "fast_ms_per_image": round(fast_ms, 2),
        "speedup": round(exact_ms / fast_ms, 2),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_median": round(float(np.median(cos)), 5),
    }
    if pdq:
        dist = [hamming(x.hashes.pdq[0].bits, y.hashes.pdq[0].bits) for x, y in zip(a, b)]
        row.update(pdq_distance_max=max(dist), pdq_distance_mean=round(statistics.mean(dist), 1))
    if decide:
        da = exact.score_prepared(a).decisions
        db = fast.score_prepared(b).decisions
        row["same_decisions"] = f"{sum(x.decision == y.decision for x, y in zip(da, db))}/{len(da)}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--images", type=int, default=24, help="images per size and kind")
    parser.add_argument("--model", type=Path, help="another model directory (its input size decides the drafts); decisions use a one-category policy then")
    args = parser.parse_args()
    encoder = OnnxEncoder(args.model or bundled.model_dir(), intra_op_threads=1)
    policy_path = bundled.policy_path()
    if args.model:  # only agreement is measured for another model: a one-category policy written for it
        policy_path = Path(tempfile.mkdtemp()) / "policy.yaml"
        policy_path.write_text(
            f"name: decode-bench\nmodel: {encoder.info().model_name}\ncategories:\n"
            "  - {name: anything, prompts: [a photo of a knife], review: 0.2, block: 0.3}\n"
        )
    policy = compile_policy(load_policy(policy_path), encoder)
    out: dict = {"model": encoder.info().model_name, "input": encoder.info().preprocess.image_size}
    for pdq in (True, False):
        for w, h in SIZES:
            photos = [encode(scene(i, (w, h)), "JPEG", quality=85) for i in range(args.images)]
            pictos = [pictogram(i, (w, h)) for i in range(args.images)]
            key = f"{'pdq' if pdq else 'no_pdq'} {w}x{h}"
            out[f"{key} photo"] = compare(encoder, policy, photos, pdq, decide=False)
            out[f"{key} pictogram"] = compare(encoder, policy, pictos, pdq, decide=True)
            if not args.json:
                print(key, "photo", out[f"{key} photo"], flush=True)
                print(key, "pictogram", out[f"{key} pictogram"], flush=True)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
