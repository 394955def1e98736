#!/usr/bin/env python
"""Rebuild the random-weight CLIP model directories used by tests, the demo and the benchmark.

    python models/build_random_clip.py                       # models/tiny-random (checked in)
    python models/build_random_clip.py --architecture vit-b-32 --out .cache/models/vit-b-32-random

Same code path as real models (moderator.models.builder writes the ONNX graphs, tokenizer.json
and manifest.json). The weights are random: every decision such a model makes is meaningless.
Needs the export extra: pip install -e '.[export]'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moderator.models.builder import build_random_model

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--architecture", default="tiny")
    p.add_argument("--out", type=Path, default=HERE / "tiny-random")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    manifest = build_random_model(args.out, args.architecture, seed=args.seed, name=f"{args.architecture}-random")
    print(f"wrote {args.out}: {manifest.name}, checksum {manifest.checksum()}")


if __name__ == "__main__":
    main()
