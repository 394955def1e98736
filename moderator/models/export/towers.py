"""Shared export steps: wrap the towers, export them to ONNX, check them against torch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moderator.errors import ModelError
from moderator.models.manifest import (
    IMAGE_INPUT,
    IMAGE_OUTPUT,
    MANIFEST_NAME,
    TEXT_INPUT,
    TEXT_OUTPUT,
    Manifest,
    write_manifest,
)

OPSET = 17
EXPORT_BATCH = 2  # graphs are traced at this batch size; the batch axis is dynamic
PARITY_LIMIT = 1e-4  # export refuses graphs further than this from torch (the tests hold 1e-5)
EXAMPLE_TEXTS = ["a photo of a knife", "two red pills on a table", "a cigarette", "a drawing of a cat"]

Tower = tuple[Any, Callable[[Any, Any], Any]]  # (torch module owning the weights, encode(module, input))


def require(module: str, what: str):
    """Import an export-only dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"{what} needs {module}: pip install 'moderator[export]' (docs/models.md has a CPU-only torch install)") from exc


def require_torch():
    return require("torch", "exporting checkpoints")


@dataclass
class ExportReport:
    """What an export produced and how close the ONNX graphs are to torch."""

    manifest: Manifest
    out: Path
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # "image@1", "image@3", "text@1", "text@3"

    def summary(self) -> str:
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in self.max_abs_diff.items())
        return (
            f"wrote {self.out} ({self.manifest.name}: {self.manifest.architecture}, dim {self.manifest.embed_dim}, "
            f"image {self.manifest.preprocess.image_size}px, context {self.manifest.context_length}, "
            f"checksum {self.manifest.checksum()}); ONNX vs torch max abs diff: {diffs}"
        )


def _normalized(torch, tower: Tower):
    owner, encode = tower

    class Normalized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = owner  # a submodule: its weights export as initializers

        def forward(self, x):
            y = encode(self.owner, x)
            if not isinstance(y, torch.Tensor):  # transformers 5 returns a model output
                y = y.pooler_output
            return torch.nn.functional.normalize(y.float(), dim=-1)

    return Normalized().eval()


def export_tower(torch, tower: Tower, example, path: Path, input_name: str, output_name: str, what: str) -> None:
    """Trace ``encode`` (plus L2 normalisation) into ONNX with a dynamic batch axis."""
    module = _normalized(torch, tower)
    try:
        # Not under no_grad: there nn.MultiheadAttention takes its fused fast path, which has no ONNX form.
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many types for unsupported operators
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(f"{what} does not export to ONNX (opset {OPSET}): {type(exc).__name__}: {first}") from exc


def write_exported_dir(
    out: Path,
    *,
    torch,
    image_tower: Tower,
    text_tower: Tower,
    tokenizer,
    example_texts: list[str],
    what: str,
    **manifest_fields: Any,
) -> ExportReport:
    """Export both towers and the tokenizer, check ONNX against torch, then write the manifest
    (last: a failed export leaves no manifest, so nothing can load the directory)."""
    from moderator.models.tokenizer import TextTokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a previous export's, now stale
    size = manifest_fields["preprocess"].image_size
    tokenizer.save(str(out / "tokenizer.json"))
    tok = TextTokenizer(out / "tokenizer.json", manifest_fields["context_length"], manifest_fields["pad_token_id"])
    gen = torch.Generator().manual_seed(0)
    export_tower(
        torch,
        image_tower,
        torch.randn(EXPORT_BATCH, 3, size, size, generator=gen),
        out / "image_encoder.onnx",
        IMAGE_INPUT,
        IMAGE_OUTPUT,
        f"{what}: the image tower",
    )
    ids = torch.from_numpy(tok(example_texts[:EXPORT_BATCH]))
    export_tower(torch, text_tower, ids, out / "text_encoder.onnx", TEXT_INPUT, TEXT_OUTPUT, f"{what}: the text tower")
    with torch.no_grad():
        dim = int(_normalized(torch, image_tower)(torch.zeros(1, 3, size, size)).shape[-1])
    diffs = parity(torch, out, image_tower, text_tower, tok, example_texts, size)
    if max(diffs.values()) > PARITY_LIMIT:
        raise ModelError(f"{what}: the ONNX graphs differ from torch by {max(diffs.values()):.1e} (> {PARITY_LIMIT:.0e}): {diffs}")
    manifest = write_manifest(
        out, image_encoder="image_encoder.onnx", text_encoder="text_encoder.onnx", tokenizer="tokenizer.json", embed_dim=dim, opset=OPSET, **manifest_fields
    )
    return ExportReport(manifest=manifest, out=out, max_abs_diff=diffs)


def parity(torch, out: Path, image_tower: Tower, text_tower: Tower, tok, texts: list[str], size: int) -> dict[str, float]:
    """Max abs difference of ONNX vs torch embeddings at batch 1 and at batch 3 (≠ the export batch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    image = ort.InferenceSession(str(out / "image_encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(str(out / "text_encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    diffs = {}
    for n in (1, 3):
        x = torch.randn(n, 3, size, size, generator=gen)
        ids = tok((texts * 3)[:n])
        with torch.no_grad():
            ref_i = _normalized(torch, image_tower)(x).numpy()
            ref_t = _normalized(torch, text_tower)(torch.from_numpy(ids)).numpy()
        (got_i,) = image.run([IMAGE_OUTPUT], {IMAGE_INPUT: x.numpy()})
        (got_t,) = text.run([TEXT_OUTPUT], {TEXT_INPUT: ids})
        diffs[f"image@{n}"] = float(np.abs(got_i - ref_i).max())
        diffs[f"text@{n}"] = float(np.abs(got_t - ref_t).max())
    return diffs
