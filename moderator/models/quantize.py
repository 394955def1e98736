"""Precision variants of a model directory.

- ``int8``: onnxruntime's dynamic quantisation of the MatMuls only (weights int8 in the graph,
  activations quantised on the fly per batch), the variant CPUs serve fastest. Quantising
  every op it can (its default: the patch embedding's Conv too, and the token embedding's Gather)
  was slower and no closer to fp32: ConvInteger runs several times slower than the float Conv it
  replaces. Measured side by side on ViT-B/32 (docs/models.md#precision-variants): MatMul-only
  94.6 images/s, every op 68.6, fp32 34.3; minimum image cosine to fp32 0.99977 and 0.99974.
  ``quant_pre_process`` fails on these graphs and is not used.
- ``fp16``: weights and activations in half precision, inputs and outputs kept float32, for GPUs.
  onnxruntime on CPU runs fp16 graphs slower than fp32 and crashes optimising them at
  ORT_ENABLE_ALL, so the onnx encoder serves fp32 instead when no GPU provider runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.manifest import Manifest, ModelFile, Variant, load_manifest, save_manifest, sha256_file

PRECISIONS = ("int8", "fp16")


def _add_variant(model_dir: str | Path, precision: str, convert) -> Manifest:
    root = Path(model_dir)
    manifest = load_manifest(root)
    fp32 = manifest.variants["fp32"]
    files = {}
    for role, entry in (("image_encoder", fp32.image_encoder), ("text_encoder", fp32.text_encoder)):
        out = entry.path.replace(".onnx", f".{precision}.onnx")
        try:
            convert(root / entry.path, root / out)
        except ModelError:
            raise
        except Exception as exc:  # onnx/onnxruntime raise their own exception types
            raise ModelError(f"{root}: making the {precision} {role}: {type(exc).__name__}: {exc}") from exc
        files[role] = ModelFile(path=out, sha256=sha256_file(root / out))
    manifest = manifest.model_copy(update={"variants": {**manifest.variants, precision: Variant(**files)}})
    save_manifest(root, manifest)
    from moderator.models.inspect import store_agreement

    store_agreement(root, precision)  # what precision: auto reads
    return load_manifest(root, verify=False)


def add_int8_variant(model_dir: str | Path) -> Manifest:
    """Write ``*.int8.onnx`` beside the fp32 graphs and name them in the manifest.

    Raises:
        ModelError: quantisation failed (needs the ``onnx`` package: the ``export`` extra).
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError("int8 quantisation needs onnxruntime.quantization and onnx: pip install 'moderator[export]'") from exc

    def convert(src: Path, dst: Path) -> None:
        quiet = _DropPreprocessAdvice()  # quantize_dynamic advises quant_pre_process, which fails on these graphs
        logging.getLogger().addFilter(quiet)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        finally:
            logging.getLogger().removeFilter(quiet)

    return _add_variant(model_dir, "int8", convert)


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def add_fp16_variant(model_dir: str | Path) -> Manifest:
    """Write ``*.fp16.onnx`` (float32 inputs and outputs, half precision inside).

    Raises:
        ModelError: conversion failed (needs the ``onnx`` package: the ``export`` extra).
    """
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise ModelError("fp16 conversion needs onnx and onnxruntime's transformers tools: pip install 'moderator[export]'") from exc

    def convert(src: Path, dst: Path) -> None:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))

    return _add_variant(model_dir, "fp16", convert)


def add_variant(model_dir: str | Path, precision: str) -> Manifest:
    if precision == "int8":
        return add_int8_variant(model_dir)
    if precision == "fp16":
        return add_fp16_variant(model_dir)
    raise ModelError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
