#!/usr/bin/env python
"""Regenerate examples/: labelled pictograms that the demo sends and that policy tools can score.

    python examples/generate.py

Held-out pictograms (never in the default model's training data): 90 of colour x object
combinations seen in training ("test") and 30 of combinations never seen ("unseen").
labels.csv columns: path, object, colour, count, background, categories (policy categories the
image belongs to, ';'-separated, empty for benign), split, caption.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from moderator.pictograms.dataset import CATEGORIES, generate  # noqa: E402


def categories_of(obj: str) -> str:
    return ";".join(c for c, objs in CATEGORIES.items() if obj in objs)


def main() -> None:
    out = HERE / "images"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    rows = []
    for split, n in (("test", 90), ("unseen", 30)):
        for i, s in enumerate(generate(n, split, seed=2026)):
            name = f"{split}-{i:03d}-{s.colour}-{s.obj}.jpg"
            (out / name).write_bytes(s.jpeg)
            rows.append([f"images/{name}", s.obj, s.colour, s.count, s.background, categories_of(s.obj), split, s.caption])
    with (HERE / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "object", "colour", "count", "background", "categories", "split", "caption"])
        w.writerows(rows)
    print(f"wrote {len(rows)} images and {HERE / 'labels.csv'}")


if __name__ == "__main__":
    main()
