#!/usr/bin/env python
"""Decode threads or decode processes (media.decode_mode), side by side in one run.

    python benchmarks/decode_workers.py [--json] [--images 192] [--workers 1,2]

The service's own ``Processor.prepare`` (SHA-256, decode, frame selection, PDQ, preprocess) on
photo-sized JPEGs, called from ``workers`` threads as the worker's decode pool calls it, with the
decode in those threads or in as many child processes. No broker and no encoder run meanwhile, so
the figures are the decode path's alone (the heap kept as the service keeps it,
moderator/media/heap.py): images per second (wall clock), CPU milliseconds per
image over the service process and its decode children, and processes / threads. Scaling from 1
to 2 workers shows how much of the path holds the GIL (threads) or what the hand-over costs
(processes); a machine with more cores than workers is needed to see beyond 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moderator import bundled  # noqa: E402
from moderator.cli.bench import tree_cpu_seconds  # noqa: E402
from moderator.encoders.onnx import OnnxEncoder  # noqa: E402
from moderator.local.samples import jpeg_stream  # noqa: E402
from moderator.media.decode import DecodeLimits  # noqa: E402
from moderator.media.heap import keep_heap  # noqa: E402
from moderator.policy import compile_policy, load_policy  # noqa: E402
from moderator.processing import KnownContentOptions, Processor  # noqa: E402


def measure(encoder, policy, images: list[bytes], workers: int, mode: str, pdq: bool) -> dict:
    processor = Processor(encoder, policy, DecodeLimits(), known=KnownContentOptions(pdq=pdq))
    if mode == "processes":
        processor.decode_in_processes(workers)
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(processor.prepare, images[: 4 * workers]))  # warm-up
            cpu, start = tree_cpu_seconds(os.getpid()), time.perf_counter()
            prepared = list(pool.map(processor.prepare, images))
            wall, cpu = time.perf_counter() - start, tree_cpu_seconds(os.getpid()) - cpu
    finally:
        processor.close()
    assert not [p.error for p in prepared if p.error is not None]
    return {"images_per_s": round(len(images) / wall, 1), "cpu_ms_per_image": round(cpu * 1e3 / len(images), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = parser.parse_args()
    keep_heap()  # as the service does in threads mode (its decode children do it themselves)
    encoder = OnnxEncoder(bundled.model_dir(), intra_op_threads=1)
    policy = compile_policy(load_policy(bundled.policy_path()), encoder)
    out: dict = {"cores": os.cpu_count()}
    for size in ((640, 480), (1920, 1080)):
        images = jpeg_stream(args.images, seed=9, size=size)
        for pdq in (True, False):
            for workers in (int(w) for w in args.workers.split(",")):
                key = f"{size[0]}x{size[1]} {'pdq' if pdq else 'no_pdq'} workers={workers}"
                row = {mode: measure(encoder, policy, images, workers, mode, pdq) for mode in ("threads", "processes")}
                row["processes_over_threads"] = round(row["processes"]["images_per_s"] / row["threads"]["images_per_s"], 2)
                out[key] = row
                if not args.json:
                    print(key, row, flush=True)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
