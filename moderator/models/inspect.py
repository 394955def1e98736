"""``moderator models info`` and ``moderator models verify``: what a model directory holds, and
whether it is whole and runs.

Both run on CPU with onnxruntime. fp16 graphs are run at ORT_ENABLE_BASIC here (onnxruntime
crashes optimising them fully on CPU); their speed on CPU says nothing about a GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderator.errors import ModelError
from moderator.models.manifest import IMAGE_INPUT, IMAGE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, Agreement, Manifest, load_manifest

PROBE_TEXTS = ["a photo of a knife", "two red pills", "a drawing of a cigarette", "a cat on a white background", "", "ünïcödé and emoji 🔪"]
NORM_TOLERANCE = {"fp16": 1e-2}  # others: 1e-3


def _session(path: Path, precision: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 0
    if precision == "fp16":
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def probe_pixels(manifest: Manifest, n: int = 16) -> np.ndarray:
    """A fixed set of images (pictograms, seed 0) preprocessed as the service does: uint8 [N,S,S,3]."""
    from moderator.media.preprocess import Preprocessor
    from moderator.pictograms.dataset import generate, to_pixels

    return to_pixels(generate(n, "test", seed=0), Preprocessor(manifest.preprocess))


def _inputs(manifest: Manifest, pixels: np.ndarray, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    from moderator.media.preprocess import normalize

    return normalize(pixels, manifest.preprocess.mean, manifest.preprocess.std), tokenizer(PROBE_TEXTS)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verification:
    model_dir: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def _shape_ok(actual: list, expected: list) -> bool:
    """ONNX dims: an int must match, a named (dynamic) dim matches the batch axis."""
    if len(actual) != len(expected):
        return False
    return all((isinstance(a, str) or a is None) if e is None else a == e for a, e in zip(actual, expected))


def verify_model_dir(model_dir: str | Path) -> Verification:
    """Checksums, graph inputs/outputs against the manifest, and a forward pass of every variant."""
    from moderator.models.tokenizer import TextTokenizer

    root = Path(model_dir)
    result = Verification(root)
    try:
        manifest = load_manifest(root, verify=True)
    except ModelError as exc:
        result.add("manifest and checksums", False, str(exc))
        return result
    result.add("manifest and checksums", True, f"{len(manifest.variants)} variant(s), tokenizer, SHA-256 all match")
    tokenizer = TextTokenizer(root / manifest.tokenizer.path, manifest.context_length, manifest.pad_token_id)
    pixels, ids = _inputs(manifest, probe_pixels(manifest, 4), tokenizer)
    s, d, c = manifest.preprocess.image_size, manifest.embed_dim, manifest.context_length
    for precision, variant in sorted(manifest.variants.items()):
        for role, entry, in_name, in_type, in_shape, out_name, x in (
            ("image", variant.image_encoder, IMAGE_INPUT, "tensor(float)", [None, 3, s, s], IMAGE_OUTPUT, pixels),
            ("text", variant.text_encoder, TEXT_INPUT, "tensor(int64)", [None, c], TEXT_OUTPUT, ids),
        ):
            what = f"{precision} {role} encoder ({entry.path})"
            try:
                sess = _session(root / entry.path, precision)
            except Exception as exc:  # onnxruntime's own exception types
                result.add(what, False, f"onnxruntime cannot load it: {exc}")
                continue
            ins = {i.name: i for i in sess.get_inputs()}
            outs = {o.name: o for o in sess.get_outputs()}
            if not result.add(
                f"{what}: input",
                in_name in ins and ins[in_name].type == in_type and _shape_ok(ins[in_name].shape, in_shape),
                f"expects {in_name} {in_type} {in_shape}, has {[(i.name, i.type, i.shape) for i in ins.values()]}",
            ):
                continue
            if not result.add(
                f"{what}: output",
                out_name in outs and _shape_ok(outs[out_name].shape, [None, d]),
                f"expects {out_name} [N,{d}], has {[(o.name, o.shape) for o in outs.values()]}",
            ):
                continue
            try:
                (y,) = sess.run([out_name], {in_name: x})
            except Exception as exc:  # onnxruntime's own exception types
                result.add(f"{what}: forward pass", False, f"onnxruntime failed running batch {len(x)}: {exc}")
                continue
            norms = np.linalg.norm(y, axis=1)
            tol = NORM_TOLERANCE.get(precision, 1e-3)
            result.add(
                f"{what}: forward pass",
                y.shape == (len(x), d) and bool(np.isfinite(y).all()) and bool(np.abs(norms - 1).max() <= tol),
                f"batch {len(x)} -> {y.shape}, L2 norms {norms.min():.4f}..{norms.max():.4f} (within {tol} of 1)",
            )
    return result


def model_info(model_dir: str | Path, *, measure: bool = True, batch: int = 16, repeats: int = 3) -> dict:
    """The manifest, file sizes and, with ``measure``, each variant's agreement with fp32 (mean and
    minimum cosine similarity of image and text embeddings on a fixed probe set) and its image
    throughput on this machine's CPU."""
    from moderator.models.tokenizer import TextTokenizer

    root = Path(model_dir)
    manifest = load_manifest(root, verify=False)
    info = {"model_dir": str(root), "checksum": manifest.checksum(), **manifest.model_dump(mode="json", exclude={"variants"})}
    variants = {}
    for precision, v in sorted(manifest.variants.items(), key=lambda kv: (kv[0] != "fp32", kv[0])):
        variants[precision] = {
            "image_encoder": v.image_encoder.path,
            "text_encoder": v.text_encoder.path,
            "bytes": (root / v.image_encoder.path).stat().st_size + (root / v.text_encoder.path).stat().st_size,
        }
    info["variants"] = variants
    if not measure:
        return info
    tokenizer = TextTokenizer(root / manifest.tokenizer.path, manifest.context_length, manifest.pad_token_id)
    pixels, ids = _inputs(manifest, probe_pixels(manifest, batch), tokenizer)
    reference = {}
    for precision in ["fp32"] + [p for p in sorted(manifest.variants) if p != "fp32"]:
        v = manifest.variants[precision]
        try:
            image, text = _session(root / v.image_encoder.path, precision), _session(root / v.text_encoder.path, precision)
            (img,) = image.run([IMAGE_OUTPUT], {IMAGE_INPUT: pixels})
            (txt,) = text.run([TEXT_OUTPUT], {TEXT_INPUT: ids})
            start = time.perf_counter()
            for _ in range(repeats):
                image.run([IMAGE_OUTPUT], {IMAGE_INPUT: pixels})
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{root}: the {precision} graphs do not run ({exc}); see: moderator models verify {root}") from exc
        per_s = repeats * len(pixels) / (time.perf_counter() - start)
        if precision == "fp32":
            reference = {"image": img, "text": txt}
        entry = variants[precision]
        entry["cpu_images_per_s"] = round(per_s, 1)
        for kind, emb in (("image", img), ("text", txt)):
            cos = cosines(emb, reference[kind])
            entry[f"{kind}_cosine_vs_fp32"] = {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6)}
    info["measured"] = {
        "images": len(pixels),
        "texts": len(PROBE_TEXTS),
        "batch": batch,
        "device": "cpu",
        "note": "fp16 runs at ORT_ENABLE_BASIC on CPU; its CPU speed says nothing about a GPU",
    }
    return info


def format_info(info: dict) -> str:
    lines = [f"{info['name']}  ({info['family']}, {info['architecture']}, checksum {info['checksum']})"]
    if info.get("source"):
        lines.append(f"  source: {info['source']}")
    pre = info["preprocess"]
    lines += [
        f"  embed dim {info['embed_dim']}, context {info['context_length']}, logit scale {info['logit_scale']:.3f}"
        + (f", logit bias {info['logit_bias']:.3f}" if info.get("logit_bias") is not None else ""),
        f"  image {pre['image_size']}px, {pre['interpolation']}, resize {pre['resize_mode']}, mean {pre['mean']}, std {pre['std']}",
        f"  opset {info['opset']}, tokenizer {info['tokenizer']['path']}",
    ]
    for precision, v in info["variants"].items():
        line = f"  {precision:5s} {v['image_encoder']} + {v['text_encoder']}  {v['bytes'] / 1e6:.1f} MB"
        if "cpu_images_per_s" in v:
            line += (
                f"  cos vs fp32 image {v['image_cosine_vs_fp32']['mean']:.6f} (min {v['image_cosine_vs_fp32']['min']:.6f})"
                f" text {v['text_cosine_vs_fp32']['mean']:.6f}  CPU {v['cpu_images_per_s']:.1f} img/s"
            )
        lines.append(line)
    if info.get("notes"):
        lines.append(f"  notes: {info['notes']}")
    return "\n".join(lines)


def cosines(emb: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Row by row cosine similarity of two embedding matrices."""
    return (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))


def measure_agreement(model_dir: str | Path, precision: str, batch: int = 16) -> Agreement:
    """``precision``'s embeddings against fp32's on the probe set (what ``add-variant`` records).

    Raises:
        ModelError: a variant is missing or its graphs do not run.
    """
    from moderator.models.tokenizer import TextTokenizer

    root = Path(model_dir)
    manifest = load_manifest(root, verify=False)
    if precision not in manifest.variants:
        raise ModelError(f"{root}: no {precision!r} variant; the manifest has {sorted(manifest.variants)}")
    tokenizer = TextTokenizer(root / manifest.tokenizer.path, manifest.context_length, manifest.pad_token_id)
    pixels, ids = _inputs(manifest, probe_pixels(manifest, batch), tokenizer)
    out = {}
    for name in ("fp32", precision):
        v = manifest.variants[name]
        try:
            (img,) = _session(root / v.image_encoder.path, name).run([IMAGE_OUTPUT], {IMAGE_INPUT: pixels})
            (txt,) = _session(root / v.text_encoder.path, name).run([TEXT_OUTPUT], {TEXT_INPUT: ids})
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{root}: the {name} graphs do not run ({exc}); see: moderator models verify {root}") from exc
        out[name] = (img, txt)
    image, text = cosines(out[precision][0], out["fp32"][0]), cosines(out[precision][1], out["fp32"][1])
    return Agreement(
        image_cosine_min=round(float(image.min()), 6),
        image_cosine_mean=round(float(image.mean()), 6),
        text_cosine_min=round(float(text.min()), 6),
        text_cosine_mean=round(float(text.mean()), 6),
        probe=f"{len(pixels)} pictograms (seed 0), {len(PROBE_TEXTS)} texts",
    )


def store_agreement(model_dir: str | Path, precision: str) -> Agreement:
    """Measure ``precision`` against fp32 and record it in the manifest (graphs untouched, so the
    model checksum does not change)."""
    from moderator.models.manifest import save_manifest

    root = Path(model_dir)
    found = measure_agreement(root, precision)
    manifest = load_manifest(root, verify=False)
    variant = manifest.variants[precision].model_copy(update={"agreement": found})
    save_manifest(root, manifest.model_copy(update={"variants": {**manifest.variants, precision: variant}}))
    return found
