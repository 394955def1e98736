"""Export an open_clip model (OpenAI CLIP, OpenCLIP, SigLIP, EVA-CLIP, MobileCLIP) to a model directory."""

from __future__ import annotations

import os
from pathlib import Path

from moderator.errors import ModelError
from moderator.models.export.clip_bpe import openai_clip_tokenizer, with_cleaning
from moderator.models.export.towers import EXAMPLE_TEXTS, ExportReport, require, require_torch, write_exported_dir
from moderator.models.manifest import Preprocess


def _open_clip():
    return require("open_clip", "exporting open_clip models")


def model_config(arch: str) -> dict:
    open_clip = _open_clip()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ModelError(f"open_clip has no architecture {arch!r}; `python -c 'import open_clip; print(open_clip.list_models())'`")
    return cfg


def cached_checkpoint(arch: str, tag: str) -> tuple[str, dict]:
    """The local file of open_clip's pretrained ``tag`` for ``arch`` (from the caches open_clip
    downloads into: the Hugging Face hub cache, ``~/.cache/clip``; never the network), and the
    tag's config.

    Raises:
        ModelError: ``tag`` is neither a file nor a known tag, or its weights are not cached here.
    """
    from open_clip import pretrained as oc_pretrained
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = oc_pretrained.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ModelError(
            f"{tag!r} is neither a checkpoint file nor a pretrained tag of open_clip {arch} "
            f"(tags: {', '.join(oc_pretrained.list_pretrained_tags_by_model(arch)) or 'none'})"
        )
    candidates: list[str] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])
        for name in [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME] if not filename else [filename]:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found, cfg
            candidates.append(f"hf://{repo}/{name}")
    if cfg.get("url"):
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local), cfg
        candidates.append(str(local))
    raise ModelError(
        f"the weights of open_clip {arch} pretrained={tag} are not in this machine's cache "
        f"(looked for {', '.join(candidates)}); nothing is downloaded here: download them where there is "
        "internet (open_clip.create_model(arch, pretrained=tag)) and copy the cache, or pass the file"
    )


def _preprocess(visual) -> Preprocess:
    cfg = getattr(visual, "preprocess_cfg", None)
    if not cfg:
        raise ModelError("the open_clip model carries no preprocess_cfg (open_clip >= 2.24 sets it)")
    size = cfg["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size[0] != size[1]:
        raise ModelError(f"non-square input {size} is not supported (the service feeds square images)")
    return Preprocess(
        image_size=size[0],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
        fill_color=cfg.get("fill_color", 0),
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
        raise ModelError(
            f"{arch} tokenises with {name} from the Hugging Face hub; nothing is downloaded here: "
            "save it on a machine with internet (AutoTokenizer.from_pretrained(...).save_pretrained(DIR)) "
            "and pass --tokenizer DIR"
        )
    from moderator.models.export.hf_tokenizer import load_tokenizer

    tokenizer, pad = load_tokenizer(tokenizer_dir)
    return with_cleaning(tokenizer, clean or "whitespace"), pad


def export_open_clip(
    arch: str, out: str | Path, *, pretrained: str | None = None, tokenizer_dir: str | Path | None = None, name: str | None = None, model=None
) -> ExportReport:
    """Export open_clip architecture ``arch`` with weights ``pretrained`` to ``out``.

    ``pretrained`` is a local checkpoint file, or a pretrained tag whose weights are already in
    the local cache (:func:`cached_checkpoint`; nothing is downloaded). ``None`` exports random
    weights. ``model`` passes an already built open_clip model of ``arch`` instead (tests).

    Raises:
        ModelError: unknown architecture, missing weights or tokenizer, an operator that does not
            export, or ONNX that differs from torch.
    """
    torch = require_torch()
    open_clip = _open_clip()
    cfg = model_config(arch)
    out = Path(out)
    source = f"open_clip {arch} pretrained={pretrained or 'none (random weights)'}"
    tokenizer, pad = _tokenizer(arch, cfg, Path(tokenizer_dir) if tokenizer_dir else None)  # before the slow part
    if model is None:
        checkpoint, overrides = None, {}
        if pretrained:
            if Path(pretrained).is_file():
                checkpoint = pretrained
            else:
                checkpoint, tag_cfg = cached_checkpoint(arch, pretrained)
                # What open_clip applies for a tag: the activation the weights were trained with
                # (OpenAI's are QuickGELU) and the tag's preprocessing.
                overrides = {
                    "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
                    "force_preprocess_cfg": {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if tag_cfg.get(k)},
                }
        try:
            model = open_clip.create_model(arch, pretrained=checkpoint, device="cpu", **overrides)
        except Exception as exc:  # open_clip raises RuntimeError, OSError, hub errors...
            raise ModelError(
                f"cannot build {source}: {type(exc).__name__}: {exc}. Pass a local checkpoint file, or a tag "
                "whose weights were downloaded into the Hugging Face cache on this machine"
            ) from exc
    model.eval()
    bias = getattr(model, "logit_bias", None)
    text_len = int(getattr(model, "context_length", cfg.get("text_cfg", {}).get("context_length", 77)))
    return write_exported_dir(
        out,
        torch=torch,
        tokenizer=tokenizer,
        example_texts=EXAMPLE_TEXTS,
        what=f"open_clip {arch}",
        image_tower=(model, lambda m, x: m.encode_image(x)),
        text_tower=(model, lambda m, x: m.encode_text(x)),
        name=name or f"{arch}-{Path(pretrained).stem if pretrained and Path(pretrained).is_file() else pretrained or 'random'}",
        family="siglip" if bias is not None else "clip",
        architecture=arch,
        source=source,
        preprocess=_preprocess(model.visual),
        context_length=text_len,
        pad_token_id=pad,
        logit_scale=float(model.logit_scale.exp().item()),
        logit_bias=None if bias is None else float(bias.item()),
        notes="" if pretrained else "RANDOM WEIGHTS: exported without a checkpoint; its decisions are arbitrary.",
    )
