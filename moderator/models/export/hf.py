"""Export a local Hugging Face ``CLIPModel`` or ``SiglipModel`` directory to a model directory."""

from __future__ import annotations

import json
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.export.hf_tokenizer import load_tokenizer
from moderator.models.export.towers import EXAMPLE_TEXTS, ExportReport, require, require_torch, write_exported_dir
from moderator.models.manifest import Preprocess

# transformers' resample codes (PIL's) to the manifest's interpolation names.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _transformers():
    return require("transformers", "exporting Hugging Face models")


def _preprocess(model_dir: Path) -> Preprocess:
    path = model_dir / "preprocessor_config.json"
    if not path.is_file():
        raise ModelError(f"{model_dir}: no preprocessor_config.json (save the model's processor beside it)")
    cfg = json.loads(path.read_text())
    size, crop = cfg.get("size", {}), cfg.get("crop_size")
    if isinstance(size, int):  # processors saved by older transformers: plain ints
        size = {"shortest_edge": size} if cfg.get("do_center_crop", True) else {"height": size, "width": size}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    resample = cfg.get("resample", 3)
    if resample not in _RESAMPLE:
        raise ModelError(f"{path}: resample {resample} is not one of {sorted(_RESAMPLE)}")
    if not cfg.get("do_resize", True) or not cfg.get("do_normalize", True) or not cfg.get("do_rescale", True):
        raise ModelError(f"{path}: the service always resizes, rescales and normalises; this processor turns one off")
    if "shortest_edge" in size:  # CLIPImageProcessor: resize the short side, then centre-crop
        if not cfg.get("do_center_crop", True) or not crop or crop.get("height") != crop.get("width"):
            raise ModelError(f"{path}: shortest-edge resize needs a square centre crop")
        if size["shortest_edge"] != crop["height"]:
            raise ModelError(f"{path}: resize {size['shortest_edge']} then crop {crop['height']} is not supported (the service crops what it resizes)")
        image_size, mode = int(crop["height"]), "shortest"
    elif "height" in size and size["height"] == size.get("width"):  # SiglipImageProcessor: squash to a square
        if cfg.get("do_center_crop"):
            raise ModelError(f"{path}: a square resize followed by a crop is not supported")
        image_size, mode = int(size["height"]), "squash"
    else:
        raise ModelError(f"{path}: size {size} is not a shortest-edge or square resize")
    return Preprocess(image_size=image_size, mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]), interpolation=_RESAMPLE[resample], resize_mode=mode)


def export_hf(model_dir: str | Path, out: str | Path, *, name: str | None = None) -> ExportReport:
    """Export the CLIPModel/SiglipModel saved in ``model_dir`` (weights, config, processor, tokenizer).

    Raises:
        ModelError: not a supported model type, a missing file, or ONNX that differs from torch.
    """
    torch = require_torch()
    transformers = _transformers()
    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: not a Hugging Face model directory (config.json missing)")
    config = transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    classes = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel}
    if config.model_type not in classes:
        raise ModelError(
            f"{model_dir}: model_type {config.model_type!r} is not supported (clip, siglip); "
            "SigLIP 2 needs its patch-size-aware processor, which the service does not implement"
        )
    preprocess = _preprocess(model_dir)
    model = classes[config.model_type].from_pretrained(str(model_dir), local_files_only=True, torch_dtype=torch.float32)
    model.eval()
    tokenizer, pad = load_tokenizer(model_dir)
    bias = getattr(model, "logit_bias", None)
    return write_exported_dir(
        out,
        torch=torch,
        image_tower=(model, lambda m, x: m.get_image_features(pixel_values=x)),
        text_tower=(model, lambda m, x: m.get_text_features(input_ids=x)),
        tokenizer=tokenizer,
        example_texts=EXAMPLE_TEXTS,
        what=f"{config.model_type} {model_dir.name}",
        name=name or model_dir.name,
        family="siglip" if config.model_type == "siglip" else "clip",
        architecture=f"hf-{config.model_type}",
        source=f"huggingface {config.model_type} {model_dir.resolve()}",
        preprocess=preprocess,
        context_length=int(config.text_config.max_position_embeddings),
        pad_token_id=pad,
        logit_scale=float(model.logit_scale.exp().item()),
        logit_bias=None if bias is None else float(bias.item()),
    )
