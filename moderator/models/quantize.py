"""Precision variants of a model directory. int8: onnxruntime's dynamic quantisation of the
MatMul weights (activations stay float), the variant CPUs serve fastest."""

from __future__ import annotations

import json
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.manifest import MANIFEST_NAME, Manifest, ModelFile, Variant, load_manifest, sha256_file


def add_int8_variant(model_dir: str | Path) -> Manifest:
    """Write ``*.int8.onnx`` beside the fp32 graphs and name them in the manifest.

    Raises:
        ModelError: quantisation failed (needs the ``onnx`` package: the ``export`` extra).
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError("int8 quantisation needs onnxruntime.quantization and onnx: pip install 'moderator[export]'") from exc
    root = Path(model_dir)
    manifest = load_manifest(root)
    fp32 = manifest.variants["fp32"]
    files = {}
    for role, entry in (("image_encoder", fp32.image_encoder), ("text_encoder", fp32.text_encoder)):
        out = entry.path.replace(".onnx", ".int8.onnx")
        quantize_dynamic(root / entry.path, root / out, weight_type=QuantType.QInt8)
        files[role] = ModelFile(path=out, sha256=sha256_file(root / out))
    manifest = manifest.model_copy(update={"variants": {**manifest.variants, "int8": Variant(**files)}})
    (root / MANIFEST_NAME).write_text(json.dumps(json.loads(manifest.model_dump_json()), indent=2) + "\n")
    return manifest
