"""Write a Triton Inference Server model repository from a model directory.

Two models, both on Triton's ``onnxruntime_onnx`` platform with dynamic batching:

- ``<prefix>_image``: input ``pixels`` uint8 ``[N,S,S,3]`` (the service's preprocessed squares,
  a quarter of float32's bytes on the wire); the graph is the manifest's image encoder with the
  normalisation (``x * 1/(255 std) - mean/std``, then NHWC -> NCHW) prepended as ONNX nodes, so
  Triton computes exactly what the in-process encoder computes. Output ``image_embeds`` [N,D].
- ``<prefix>_text``: input ``input_ids`` int64 ``[N,context]`` (the client tokenises with the
  model directory's ``tokenizer.json``), output ``text_embeds`` [N,D].

Each ``config.pbtxt`` carries the model's name, checksum and precision as parameters; the client
refuses a server whose checksum differs from its own model directory.

TensorRT: given an engine (``RepoOptions.image_engine``/``text_engine``) built from the graph this
module writes (``trtexec --onnx=REPO/<prefix>_image/1/model.onnx --saveEngine=...``, see
:func:`trtexec_command`), the model becomes a ``tensorrt_plan`` model serving ``model.plan``;
the engine's optimisation profile must cover batch 1 to ``max_batch_size``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.manifest import IMAGE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, Manifest, load_manifest
from moderator.models.triton_contract import (  # noqa: F401  (re-exported: the repository's contract)
    CHECKSUM_PARAMETER,
    NAME_PARAMETER,
    PIXELS_INPUT,
    PRECISION_PARAMETER,
    require_onnx,
    uint8_image_graph,
)

_PROTOBUF_LIMIT = 1_800_000_000  # bytes: larger graphs keep their weights as external data


@dataclass(frozen=True)
class RepoOptions:
    prefix: str = "moderator"
    precision: str = "fp32"
    max_batch_size: int = 64
    max_queue_delay_us: int = 2_000
    instances: int = 1
    kind: str = "KIND_GPU"  # KIND_GPU or KIND_CPU
    tensorrt: bool = False  # onnxruntime's TensorRT accelerator (fp16) on GPU instances
    image_engine: Path | None = None  # a TensorRT engine of the repository's image graph: tensorrt_plan
    text_engine: Path | None = None


def _config(
    name: str, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]], manifest: Manifest, opts: RepoOptions, engine: bool = False
) -> str:
    def tensors(items: list[tuple[str, str, list[int]]]) -> str:
        return ",\n".join(f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(str(d) for d in dims)} ] }}' for n, t, dims in items)

    lines = [
        f'name: "{name}"',
        f'platform: "{"tensorrt_plan" if engine else "onnxruntime_onnx"}"',
        f"max_batch_size: {opts.max_batch_size}",
        f"input [\n{tensors(inputs)}\n]",
        f"output [\n{tensors(outputs)}\n]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {opts.max_queue_delay_us} }}",
        f"instance_group [ {{ count: {opts.instances} kind: {opts.kind} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
        f'parameters {{ key: "{CHECKSUM_PARAMETER}" value: {{ string_value: "{manifest.checksum()}" }} }}',
        f'parameters {{ key: "{NAME_PARAMETER}" value: {{ string_value: "{manifest.name}" }} }}',
        f'parameters {{ key: "{PRECISION_PARAMETER}" value: {{ string_value: "{"tensorrt" if engine else opts.precision}" }} }}',
    ]
    if opts.tensorrt and opts.kind == "KIND_GPU" and not engine:
        lines.append(
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            'parameters { key: "precision_mode" value: "FP16" } '
            'parameters { key: "trt_engine_cache_enable" value: "true" } } ] } }'
        )
    return "\n".join(lines) + "\n"


def write_repository(model_dir: str | Path, out: str | Path, opts: RepoOptions = RepoOptions()) -> list[Path]:
    """Write ``out/<prefix>_image`` and ``out/<prefix>_text``; returns the two model folders.

    Raises:
        ModelError: the model directory is invalid, lacks the precision, or onnx is missing.
    """
    onnx = require_onnx()
    model_dir, out = Path(model_dir), Path(out)
    manifest = load_manifest(model_dir)
    if opts.precision not in manifest.variants:
        raise ModelError(f"{model_dir}: no {opts.precision!r} variant; the manifest has {sorted(manifest.variants)}")
    if opts.kind not in ("KIND_GPU", "KIND_CPU"):
        raise ModelError(f"instance kind must be KIND_GPU or KIND_CPU, not {opts.kind!r}")
    for engine in (opts.image_engine, opts.text_engine):
        if engine is None:
            continue
        if opts.kind != "KIND_GPU":
            raise ModelError(f"TensorRT engine {engine}: tensorrt_plan models run on GPU instances only (--kind gpu)")
        if not Path(engine).is_file() or Path(engine).stat().st_size == 0:
            raise ModelError(
                f"TensorRT engine {engine}: not a file (write the repository without engines, then build one with: {trtexec_command(out, opts, manifest)})"
            )
    variant = manifest.variants[opts.precision]
    size, dim = manifest.preprocess.image_size, manifest.embed_dim

    image_dir = out / f"{opts.prefix}_image"
    text_dir = out / f"{opts.prefix}_text"
    out.mkdir(parents=True, exist_ok=True)
    staged = {}  # engines are copied aside first: one may live in a folder about to be replaced
    for kind, engine in (("image", opts.image_engine), ("text", opts.text_engine)):
        if engine is not None:
            staged[kind] = out / f".{opts.prefix}_{kind}.plan.staging"
            shutil.copyfile(engine, staged[kind])
    for d in (image_dir, text_dir):
        if d.exists():
            shutil.rmtree(d)
        (d / "1").mkdir(parents=True)

    if opts.image_engine is not None:
        staged["image"].replace(image_dir / "1" / "model.plan")
    else:
        image = uint8_image_graph(manifest, model_dir / variant.image_encoder.path)
        external = image.ByteSize() > _PROTOBUF_LIMIT
        onnx.save(image, str(image_dir / "1" / "model.onnx"), save_as_external_data=external, location="model.onnx.data")
    (image_dir / "config.pbtxt").write_text(
        _config(
            image_dir.name,
            [(PIXELS_INPUT, "TYPE_UINT8", [size, size, 3])],
            [(IMAGE_OUTPUT, "TYPE_FP32", [dim])],
            manifest,
            opts,
            engine=opts.image_engine is not None,
        )
    )
    if opts.text_engine is not None:
        staged["text"].replace(text_dir / "1" / "model.plan")
    else:
        shutil.copyfile(model_dir / variant.text_encoder.path, text_dir / "1" / "model.onnx")
    (text_dir / "config.pbtxt").write_text(
        _config(
            text_dir.name,
            [(TEXT_INPUT, "TYPE_INT64", [manifest.context_length])],
            [(TEXT_OUTPUT, "TYPE_FP32", [dim])],
            manifest,
            opts,
            engine=opts.text_engine is not None,
        )
    )
    return [image_dir, text_dir]


def trtexec_command(out: str | Path, opts: RepoOptions, manifest: Manifest | None = None) -> str:
    """The ``trtexec`` line that builds an fp16 engine of the image graph this module writes."""
    size = manifest.preprocess.image_size if manifest is not None else "S"
    model = Path(out) / f"{opts.prefix}_image" / "1" / "model.onnx"
    opt = max(1, opts.max_batch_size // 2)
    return (
        f"trtexec --onnx={model} --saveEngine=image.plan --fp16 --minShapes={PIXELS_INPUT}:1x{size}x{size}x3 "
        f"--optShapes={PIXELS_INPUT}:{opt}x{size}x{size}x3 --maxShapes={PIXELS_INPUT}:{opts.max_batch_size}x{size}x{size}x3"
    )
