"""Image-encoder throughput on one NVIDIA GPU, side by side in one run (run by benchmarks/gpu.sh).

TensorRT fp16 (the engine ``moderator models tensorrt`` built), onnxruntime CUDA provider with the
fp16 variant, and with fp32; each at batch 1, 32 and 256, on device-resident inputs (host copies
excluded for all three alike: onnxruntime through IO binding, TensorRT on torch CUDA tensors).
Prints a table and one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tensorrt as trt
import torch

from moderator.models.manifest import IMAGE_INPUT, IMAGE_OUTPUT, load_manifest

BATCHES = (1, 32, 256)
SECONDS = 4.0  # per measurement, after warm-up


def _time(run, batch: int) -> float:
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        run()
        n += 1
    torch.cuda.synchronize()
    return n * batch / (time.perf_counter() - start)


def ort_runner(path: Path, x: torch.Tensor, dim: int):
    sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit(f"onnxruntime could not start the CUDA provider: {sess.get_providers()}")
    y = torch.empty((x.shape[0], dim), dtype=torch.float32, device="cuda")
    binding = sess.io_binding()
    binding.bind_input(IMAGE_INPUT, "cuda", 0, np.float32, list(x.shape), x.data_ptr())
    binding.bind_output(IMAGE_OUTPUT, "cuda", 0, np.float32, list(y.shape), y.data_ptr())
    return lambda: sess.run_with_iobinding(binding), y


def trt_runner(engine_path: Path, x: torch.Tensor, dim: int):
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    y = torch.empty((x.shape[0], dim), dtype=torch.float32, device="cuda")
    context.set_input_shape(IMAGE_INPUT, tuple(x.shape))
    context.set_tensor_address(IMAGE_INPUT, x.data_ptr())
    context.set_tensor_address(IMAGE_OUTPUT, y.data_ptr())
    stream = torch.cuda.Stream()

    def run() -> None:
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()

    return run, y


def main(model_dir: str) -> None:
    root = Path(model_dir)
    m = load_manifest(root)
    s, dim = m.preprocess.image_size, m.embed_dim
    results: dict[str, dict[int, float]] = {"tensorrt-fp16": {}, "cuda-fp16": {}, "cuda-fp32": {}}
    agreement = {}
    for batch in BATCHES:
        x = torch.randn(batch, 3, s, s, device="cuda")
        outputs = {}
        for name, (run, y) in {
            "tensorrt-fp16": trt_runner(root / "tensorrt" / "image_encoder.fp16.plan", x, dim),
            "cuda-fp16": ort_runner(root / m.variants["fp16"].image_encoder.path, x, dim),
            "cuda-fp32": ort_runner(root / m.variants["fp32"].image_encoder.path, x, dim),
        }.items():
            results[name][batch] = round(_time(run, batch), 1)
            run()
            torch.cuda.synchronize()
            outputs[name] = y.clone()
        ref = outputs["cuda-fp32"]
        agreement[batch] = {k: round(float((v * ref).sum(1).min()), 5) for k, v in outputs.items() if k != "cuda-fp32"}
    print(f"{'images/s':>14} " + " ".join(f"{f'batch {b}':>11}" for b in BATCHES))
    for name, row in results.items():
        print(f"{name:>14} " + " ".join(f"{row[b]:>11.1f}" for b in BATCHES))
    print("min cosine vs cuda-fp32:", agreement)
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(0),
                "model": m.architecture,
                "images_per_s": results,
                "ratio_tensorrt_vs_cuda_fp32": {b: round(results["tensorrt-fp16"][b] / results["cuda-fp32"][b], 2) for b in BATCHES},
                "min_cosine_vs_fp32": agreement,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
