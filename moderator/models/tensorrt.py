"""TensorRT engines of a model directory's graphs (``moderator models tensorrt``).

Builds with the ``tensorrt`` Python package on an NVIDIA GPU: fp16, one optimisation profile over
the batch axis (min/opt/max). Engines are specific to the GPU model and the TensorRT version that
built them; :data:`ENGINES_JSON` records both. They are written under ``DIR/tensorrt/``:

- ``image_encoder.fp16.plan`` / ``text_encoder.fp16.plan``: the model's graphs in fp16 (TensorRT
  10: the fp32 graphs with the FP16 builder flag; TensorRT 11, which dropped that flag: the
  manifest's fp16 variant), for running with TensorRT directly (``benchmarks/gpu.sh``).
- with ``for_triton``, ``image_encoder.uint8.fp16.plan``: the Triton repository's image graph
  (uint8 NHWC input, normalisation inside), for ``moderator models triton-repo --image-engine``.

The in-process onnx encoder does not read these files: it prefers onnxruntime's TensorRT
execution provider, which builds and caches its own engines.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.manifest import load_manifest

ENGINES_JSON = "engines.json"


@dataclass(frozen=True)
class Profile:
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ModelError(f"batch profile must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}")


def _tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise ModelError(
            "building TensorRT engines needs the tensorrt package and an NVIDIA GPU: pip install tensorrt (matching the CUDA of the machine)"
        ) from exc
    return tensorrt


def build_engine(onnx_path: Path, out: Path, profile: Profile, *, fp16: bool = True, workspace_gib: int = 8) -> Path:
    """Parse ``onnx_path`` and write a serialised engine to ``out``; ``fp16`` sets TensorRT 10's
    FP16 builder flag (TensorRT 11 takes the precision from the graph).

    Raises:
        ModelError: tensorrt is missing, no GPU, a layer TensorRT cannot parse, or the build failed.
    """
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # TypeError/RuntimeError when CUDA cannot initialise
        raise ModelError(f"TensorRT cannot start (no usable NVIDIA GPU?): {exc}") from exc
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise ModelError(f"{onnx_path}: input {tensor.name} has dynamic non-batch dims {tuple(tensor.shape)}")
        opt.set_shape(tensor.name, (profile.min_batch, *rest), (profile.opt_batch, *rest), (profile.max_batch, *rest))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    return out


def build_engines(model_dir: str | Path, profile: Profile = Profile(), *, for_triton: bool = False, text: bool = True) -> list[Path]:
    """Build fp16 engines of the model's graphs (and, ``for_triton``, of Triton's uint8 image graph).

    TensorRT 10 builds the fp32 graphs with its FP16 builder flag. TensorRT 11 removed that flag
    (networks are strongly typed: each tensor keeps the type the graph gives it), so there the
    engines are built from the manifest's ``fp16`` variant.
    """
    trt = _tensorrt()
    root = Path(model_dir)
    manifest = load_manifest(root)
    weakly_typed = hasattr(trt.BuilderFlag, "FP16")
    if weakly_typed:
        source = manifest.variants["fp32"]
    elif "fp16" in manifest.variants:
        source = manifest.variants["fp16"]
    else:
        raise ModelError(
            f"TensorRT {trt.__version__} builds strongly typed networks only: add the fp16 variant first (moderator models add-variant {root} fp16)"
        )
    out = root / "tensorrt"
    built = [build_engine(root / source.image_encoder.path, out / "image_encoder.fp16.plan", profile, fp16=weakly_typed)]
    if text:
        built.append(build_engine(root / source.text_encoder.path, out / "text_encoder.fp16.plan", profile, fp16=weakly_typed))
    if for_triton:
        import onnx

        from moderator.models.triton_contract import uint8_image_graph

        with tempfile.TemporaryDirectory() as tmp:
            graph = Path(tmp) / "image_uint8.onnx"
            onnx.save(uint8_image_graph(manifest, root / source.image_encoder.path), str(graph))
            built.append(build_engine(graph, out / "image_encoder.uint8.fp16.plan", profile, fp16=weakly_typed))
    gpu = _gpu_name()
    (out / ENGINES_JSON).write_text(
        json.dumps(
            {
                "tensorrt_version": trt.__version__,
                "gpu": gpu,
                "model_checksum": manifest.checksum(),
                "precision": "fp16",
                "profile": {"min": profile.min_batch, "opt": profile.opt_batch, "max": profile.max_batch},
                "engines": [p.name for p in built],
            },
            indent=2,
        )
        + "\n"
    )
    return built


def _gpu_name() -> str:
    try:
        return (
            subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"
