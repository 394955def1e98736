"""Export an open_clip model (OpenAI CLIP, OpenCLIP, SigLIP, EVA-CLIP, MobileCLIP) to a model directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.export.clip_bpe import openai_clip_tokenizer, with_cleaning
from moderator.models.export.towers import EXAMPLE_TEXTS, ExportReport, require, require_torch, write_exported_dir
from moderator.models.manifest import Preprocess

log = logging.getLogger(__name__)


def _open_clip():
    return require("open_clip", "exporting open_clip models")


def model_config(arch: str) -> dict:
    open_clip = _open_clip()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ModelError(f"open_clip has no architecture {arch!r}; `python -c 'import open_clip; print(open_clip.list_models())'`")
    return cfg


def _preprocess(visual) -> Preprocess:
    cfg = getattr(visual, "preprocess_cfg", None)
    if not cfg:
        raise ModelError("the open_clip model carries no preprocess_cfg (open_clip >= 2.24 sets it)")
    size = cfg["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size[0] != size[1]:
        raise ModelError(f"non-square input {size} is not supported (the service feeds square images)")
    return Preprocess(
        image_size=size[0], mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"), fill_color=cfg.get("fill_color", 0),
    )


def _tokenizer(arch: str, cfg: dict, tokenizer_dir: Path | None):
    """tokenizer.json for the model, and its pad id: CLIP's BPE, or a local Hugging Face tokenizer."""
    text_cfg = cfg.get("text_cfg", {})
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    clean = kwargs.pop("clean", None)
    if kwargs.get("strip_sep_token"):
        raise ModelError(f"{arch}: its tokenizer strips the separator token, which a tokenizer.json cannot express")
    wants_hf = bool(text_cfg.get("hf_tokenizer_name")) or "siglip" in arch.lower()
    if not wants_hf:
        if tokenizer_dir is not None:
            raise ModelError(f"{arch} uses CLIP's own BPE tokenizer (bundled with open_clip): drop --tokenizer")
        tok = openai_clip_tokenizer(clean=clean or "lower")
        return tok, 0  # open_clip pads with zeros
    if tokenizer_dir is None:
        name = text_cfg.get("hf_tokenizer_name") or "the SigLIP tokenizer"
        raise ModelError(f"{arch} tokenises with {name} from the Hugging Face hub; nothing is downloaded here: "
                         "save it on a machine with internet (AutoTokenizer.from_pretrained(...).save_pretrained(DIR)) "
                         "and pass --tokenizer DIR")
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if not getattr(hf, "is_fast", False):
        raise ModelError(f"{tokenizer_dir}: no fast tokenizer (tokenizer.json) could be made from it")
    if hf.pad_token_id is None:
        raise ModelError(f"{tokenizer_dir}: the tokenizer has no pad token")
    return with_cleaning(hf.backend_tokenizer, clean or "whitespace"), int(hf.pad_token_id)


def export_open_clip(arch: str, out: str | Path, *, pretrained: str | None = None, tokenizer_dir: str | Path | None = None,
                     name: str | None = None, model=None) -> ExportReport:
    """Export open_clip architecture ``arch`` with weights ``pretrained`` to ``out``.

    ``pretrained`` is a local checkpoint file, or a pretrained tag whose weights are already in
    the local cache (nothing is downloaded: the hub is switched to offline mode). ``None`` exports
    random weights. ``model`` passes an already built open_clip model of ``arch`` instead (tests).

    Raises:
        ModelError: unknown architecture, missing weights or tokenizer, an operator that does not
            export, or ONNX that differs from torch.
    """
    torch = require_torch()
    open_clip = _open_clip()
    cfg = model_config(arch)
    out = Path(out)
    source = f"open_clip {arch} pretrained={pretrained or 'none (random weights)'}"
    if model is None:
        if pretrained and not Path(pretrained).is_file():
            os.environ["HF_HUB_OFFLINE"] = "1"  # a tag: use the cache, never the network
        try:
            model = open_clip.create_model(arch, pretrained=pretrained or None, device="cpu")
        except Exception as exc:  # open_clip raises RuntimeError, OSError, hub errors...
            raise ModelError(f"cannot build {source}: {type(exc).__name__}: {exc}. Pass a local checkpoint file, or a tag "
                             "whose weights were downloaded into the Hugging Face cache on this machine") from exc
    model.eval()
    tokenizer, pad = _tokenizer(arch, cfg, Path(tokenizer_dir) if tokenizer_dir else None)
    bias = getattr(model, "logit_bias", None)
    text_len = int(getattr(model, "context_length", cfg.get("text_cfg", {}).get("context_length", 77)))
    return write_exported_dir(
        out, torch=torch, image_tower=(model, lambda m, x: m.encode_image(x)), text_tower=(model, lambda m, x: m.encode_text(x)), tokenizer=tokenizer,
        example_texts=EXAMPLE_TEXTS, what=f"open_clip {arch}",
        name=name or f"{arch}-{Path(pretrained).stem if pretrained and Path(pretrained).is_file() else pretrained or 'random'}",
        family="siglip" if bias is not None else "clip", architecture=arch, source=source,
        preprocess=_preprocess(model.visual), context_length=text_len, pad_token_id=pad,
        logit_scale=float(model.logit_scale.exp().item()), logit_bias=None if bias is None else float(bias.item()),
        notes="" if pretrained else "RANDOM WEIGHTS: exported without a checkpoint; its decisions are arbitrary.",
    )
