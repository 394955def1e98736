"""Shrunken random-weight configs of every exported family, registered with open_clip and timm.

Each keeps its family's code path (tower classes, pooling, masks, activations, logit bias) and
shrinks only widths and depths, so export and parity run in seconds on a CPU. Nothing is
downloaded: weights are random, and the hub-hosted SigLIP tokenizer is replaced by a small
SentencePiece-style tokenizer saved locally in the Hugging Face format.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch  # the export extra is part of the dev install (make install)

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def _small_timm(base: str, **overrides) -> str:
    """Register ``moderator_tiny_<base>``: timm's own model class with smaller widths."""
    import timm
    from timm.models import register_model

    name = f"moderator_tiny_{base}"
    if name not in timm.list_models(name):

        def create(pretrained: bool = False, **kwargs):
            return timm.create_model(base, pretrained=False, **{**overrides, **kwargs})

        create.__name__ = name
        register_model(create)
    return name


def _configs() -> dict[str, dict]:
    return {
        # OpenAI CLIP layout (ViT-B/32: quick_gelu, causal text transformer, argmax pooling).
        "test-openai-vit": {
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
            "text_cfg": TEXT,
        },
        # OpenCLIP layout (ViT-H/14: gelu, patch 14).
        "test-openclip-vit": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "patch_size": 14, "head_width": 32},
            "text_cfg": TEXT,
        },
        # SigLIP: timm ViT with attention pooling, bidirectional text pooled at the last token, logit bias.
        "test-siglip": {
            "embed_dim": 64,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 64,
                "timm_model_name": _small_timm("vit_base_patch16_siglip_224", img_size=64, embed_dim=64, depth=2, num_heads=2),
                "timm_model_pretrained": False,
                "timm_pool": "map",
                "timm_proj": "none",
            },
            "text_cfg": {
                "context_length": 16,
                "vocab_size": 512,
                "hf_tokenizer_name": "local",
                "tokenizer_kwargs": {"clean": "canonicalize"},
                "width": 64,
                "heads": 2,
                "layers": 2,
                "no_causal_mask": True,
                "proj_bias": True,
                "pool_type": "last",
                "norm_kwargs": {"eps": 1e-6},
            },
        },
        # EVA-CLIP: timm EVA-02 (rotary embeddings, SwiGLU) image tower.
        "test-eva": {
            "embed_dim": 32,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 64,
                "timm_model_name": _small_timm("eva02_base_patch16_clip_224", img_size=64, embed_dim=64, depth=2, num_heads=2),
                "timm_model_pretrained": False,
                "timm_pool": "token",
                "timm_proj": None,
            },
            "text_cfg": TEXT,
        },
        # MobileCLIP: timm FastViT-MCi image tower at 256 pixels, bidirectional text.
        "test-mobileclip": {
            "embed_dim": 32,
            "custom_text": True,
            "vision_cfg": {
                "timm_model_name": _small_timm("fastvit_mci1", layers=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128)),
                "timm_model_pretrained": False,
                "timm_pool": "avg",
                "timm_proj": None,
                "image_size": 256,
            },
            "text_cfg": {**TEXT, "no_causal_mask": True},
        },
    }


FAMILIES = ["test-openai-vit", "test-openclip-vit", "test-siglip", "test-eva", "test-mobileclip"]


@pytest.fixture(scope="session", autouse=True)
def registered_configs():
    import open_clip

    for name, cfg in _configs().items():
        open_clip.factory._MODEL_CONFIGS[name] = cfg  # open_clip's registry of architecture configs
    return FAMILIES


def sentencepiece_style_tokenizer(vocab_size: int = 512):
    """A T5/SigLIP-style tokenizer (Unigram, Metaspace, </s> appended, <pad> 0) as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from moderator.models.builder import tokenizer_corpus

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        tokenizer_corpus() * 4,
        trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False),
    )
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=64)


@pytest.fixture(scope="session")
def siglip_tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("siglip-tokenizer")
    sentencepiece_style_tokenizer().save_pretrained(str(out))
    return out


def build_open_clip(arch: str, tokenizer_dir: Path | None = None):
    """The random-weight open_clip model and open_clip's own tokenizer for it (the references)."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None, device="cpu").eval()
    if "siglip" in arch:
        tokenizer = open_clip.tokenizer.HFTokenizer(str(tokenizer_dir), context_length=16, clean="canonicalize")
    else:
        tokenizer = open_clip.get_tokenizer(arch)
    return model, tokenizer


def siglip_sentencepiece_tokenizer(out: Path):
    """A SigLIP tokenizer as google/siglip-* ship it: ``spiece.model`` read by the slow
    ``SiglipTokenizer`` (no tokenizer.json), with a SentencePiece model trained here."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    from moderator.models.builder import tokenizer_corpus

    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(tokenizer_corpus() * 3))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out / "spiece"),
        vocab_size=90,
        model_type="unigram",
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        minloglevel=2,
    )
    corpus.unlink()
    tok = SiglipTokenizer(vocab_file=str(out / "spiece.model"), model_max_length=64)
    tok.save_pretrained(str(out))
    return tok
