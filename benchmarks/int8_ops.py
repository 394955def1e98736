#!/usr/bin/env python
"""Which ops to quantise for the int8 variant, measured side by side in one run.

    python benchmarks/int8_ops.py [--model DIR]     # default: the bench's random ViT-B/32

The image encoder three ways: fp32, onnxruntime's dynamic quantisation of every op it supports
(its default: MatMul, the patch embedding's Conv, Gather...) and of the MatMuls only (what
``moderator models add-variant DIR int8`` writes). Prints images per second (batch 16, all cores,
4 interleaved rounds of 2 runs; the median) and the cosine of each variant's embeddings to fp32's
on the probe pictograms (min and mean), and file sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moderator import bundled  # noqa: E402
from moderator.encoders.onnx import session_options  # noqa: E402
from moderator.media.preprocess import normalize  # noqa: E402
from moderator.models.inspect import cosines, probe_pixels  # noqa: E402
from moderator.models.manifest import load_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=bundled.work_dir() / "models" / "vit-b-32-random", help="model directory (fp32 variant used)")
    args = parser.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    manifest = load_manifest(args.model, verify=False)
    fp32 = args.model / manifest.variants["fp32"].image_encoder.path
    out = Path(tempfile.mkdtemp(prefix="int8-ops-"))
    quantize_dynamic(fp32, out / "every-op.onnx", weight_type=QuantType.QInt8)
    quantize_dynamic(fp32, out / "matmul-only.onnx", weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    paths = {"fp32": fp32, "int8 every op": out / "every-op.onnx", "int8 MatMul only": out / "matmul-only.onnx"}

    # The bare encoder at its fastest: onnxruntime's own spinning, every core.
    sessions = {name: ort.InferenceSession(str(p), session_options(ort, 0, spinning=True), providers=["CPUExecutionProvider"]) for name, p in paths.items()}
    pre = manifest.preprocess
    feed_name = sessions["fp32"].get_inputs()[0].name
    probe = normalize(probe_pixels(manifest, 16), pre.mean, pre.std)
    emb = {name: s.run(None, {feed_name: probe})[0] for name, s in sessions.items()}
    batch = normalize(np.random.default_rng(0).integers(0, 256, (16, pre.image_size, pre.image_size, 3), dtype=np.uint8), pre.mean, pre.std)
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(4):
        for name, s in sessions.items():
            s.run(None, {feed_name: batch})
            start = time.perf_counter()
            for _ in range(2):
                s.run(None, {feed_name: batch})
            rates[name].append(2 * len(batch) / (time.perf_counter() - start))
    result = {"model": manifest.name, "architecture": manifest.architecture}
    for name in sessions:
        cos = cosines(emb[name], emb["fp32"])
        result[name] = {
            "images_per_s": round(float(np.median(rates[name])), 1),
            "vs_fp32": round(float(np.median(rates[name]) / np.median(rates["fp32"])), 2),
            "cosine_min": round(float(cos.min()), 6),
            "cosine_mean": round(float(cos.mean()), 6),
            "mb": round(paths[name].stat().st_size / 1e6, 1),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
