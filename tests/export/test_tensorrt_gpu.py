"""TensorRT on an NVIDIA GPU: the engine builder and the GPU providers (skipped, with the reason,
on machines without a GPU; benchmarks/gpu.sh measures the same path at full size)."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from tests.conftest import TINY_MODEL

pytestmark = [
    pytest.mark.export,
    pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs an NVIDIA GPU (no nvidia-smi here)"),
    pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs the tensorrt package (pip install tensorrt)"),
]


def test_engine_agrees_with_fp32_and_triton_engine_builds(tmp_path):
    import torch

    from benchmarks.gpu_bench import trt_runner
    from moderator.encoders.onnx import OnnxEncoder
    from moderator.media.preprocess import normalize
    from moderator.models.manifest import load_manifest
    from moderator.models.quantize import add_variant
    from moderator.models.tensorrt import Profile, build_engines

    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    add_variant(model, "fp16")  # TensorRT 11 builds from it (strong typing)
    built = build_engines(model, Profile(1, 8, 16), for_triton=True)
    assert sorted(p.name for p in built) == ["image_encoder.fp16.plan", "image_encoder.uint8.fp16.plan", "text_encoder.fp16.plan"]
    m = load_manifest(model)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(normalize(pixels, m.preprocess.mean, m.preprocess.std)).cuda()
    run, y = trt_runner(model / "tensorrt" / "image_encoder.fp16.plan", x, m.embed_dim)
    run()
    ref = OnnxEncoder(model, providers=["CPUExecutionProvider"]).encode_images(pixels)
    assert float((y.cpu().numpy() * ref).sum(1).min()) >= 0.999


def test_onnx_encoder_prefers_a_gpu_provider():
    from moderator.encoders.onnx import GPU_PROVIDERS, OnnxEncoder

    enc = OnnxEncoder(TINY_MODEL)
    assert enc.providers[0] in GPU_PROVIDERS
