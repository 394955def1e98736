"""Hugging Face CLIPModel and SiglipModel directories (random weights, saved as transformers saves
real checkpoints: config, safetensors, processor, tokenizer) exported with parity."""

from __future__ import annotations

import numpy as np
import pytest

from moderator.encoders.onnx import OnnxEncoder
from moderator.errors import ModelError
from moderator.media.preprocess import normalize
from moderator.models.export.clip_bpe import openai_clip_tokenizer
from moderator.models.export.hf import export_hf
from moderator.models.manifest import load_manifest
from tests.export.conftest import siglip_sentencepiece_tokenizer, torch

pytestmark = [pytest.mark.export]

TEXTS = ["a photo of a knife", "two red pills", "", "a very long prompt " * 30, "emoji 🔫 and ÉCOLE"]
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def _save_clip(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(SMALL, vocab_size=49408, max_position_embeddings=77), vision_config=dict(SMALL, image_size=64, patch_size=16), projection_dim=16
    )
    model = CLIPModel(cfg).eval()
    model.save_pretrained(str(path))
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(str(path))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=openai_clip_tokenizer(), bos_token="<start_of_text>", eos_token="<end_of_text>", pad_token="<end_of_text>", model_max_length=77
    )
    tok.save_pretrained(str(path))
    return model, tok


def _save_siglip(path):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    cfg = SiglipConfig(text_config=dict(SMALL, vocab_size=128, max_position_embeddings=16), vision_config=dict(SMALL, image_size=64, patch_size=16))
    model = SiglipModel(cfg).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-10.0)
        model.logit_scale.fill_(np.log(10.0))
    model.save_pretrained(str(path))
    SiglipImageProcessor(size={"height": 64, "width": 64}).save_pretrained(str(path))
    tok = siglip_sentencepiece_tokenizer(path)  # spiece.model and the slow tokenizer, as google/siglip-* ship
    return model, tok


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_directory_exports_with_parity(kind, tmp_path):
    src = tmp_path / "hf"
    model, tok = (_save_clip if kind == "clip" else _save_siglip)(src)
    report = export_hf(src, tmp_path / "out")
    manifest = load_manifest(tmp_path / "out")
    assert manifest.family == kind and manifest.architecture == f"hf-{kind}"
    assert manifest.preprocess.resize_mode == ("shortest" if kind == "clip" else "squash")
    if kind == "siglip":
        assert manifest.logit_bias == pytest.approx(-10.0) and manifest.logit_scale == pytest.approx(10.0)
    enc = OnnxEncoder(tmp_path / "out")
    ctx = manifest.context_length
    rng = np.random.default_rng(0)
    for n in (1, 4):
        pixels = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        x = torch.from_numpy(normalize(pixels, manifest.preprocess.mean, manifest.preprocess.std))
        ids = tok(TEXTS[:n], padding="max_length", truncation=True, max_length=ctx, return_tensors="pt").input_ids
        np.testing.assert_array_equal(enc.tokenize(TEXTS[:n]), ids.numpy())
        with torch.no_grad():
            ref_i = torch.nn.functional.normalize(_features(model.get_image_features(pixel_values=x)), dim=-1).numpy()
            ref_t = torch.nn.functional.normalize(_features(model.get_text_features(input_ids=ids)), dim=-1).numpy()
        assert np.abs(enc.encode_images(pixels) - ref_i).max() <= 1e-5
        assert np.abs(enc.encode_texts(TEXTS[:n]) - ref_t).max() <= 1e-5
    assert max(report.max_abs_diff.values()) <= 1e-5
    enc.close()


def test_hf_refusals_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="config.json missing"):
        export_hf(tmp_path, tmp_path / "out")
    src = tmp_path / "clip"
    _save_clip(src)
    (src / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match="no preprocessor_config.json"):
        export_hf(src, tmp_path / "out")
    from transformers import BertConfig

    BertConfig(**SMALL).save_pretrained(str(tmp_path / "bert"))
    with pytest.raises(ModelError, match="model_type 'bert' is not supported"):
        export_hf(tmp_path / "bert", tmp_path / "out")


def test_processor_configs_of_older_transformers_read_the_same(tmp_path):
    import json

    from moderator.models.export.hf import _preprocess

    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {  # openai/clip-vit-base-patch32 as first published
                "crop_size": 224,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 3,
                "size": 224,
            }
        )
    )
    pre = _preprocess(tmp_path)
    assert (pre.image_size, pre.resize_mode, pre.interpolation) == (224, "shortest", "bicubic")
