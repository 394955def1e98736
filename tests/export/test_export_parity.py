"""Export every family to a model directory and hold the service's encoder to the original
model: ONNX vs torch L2-normalised embeddings within 1e-5, for images and texts, at batch 1 and
at a batch size other than the export batch; tokenisation through tokenizer.json exactly as the
checkpoint's own tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from moderator.encoders.onnx import OnnxEncoder
from moderator.errors import ModelError
from moderator.media.preprocess import normalize
from moderator.models.export.openclip import export_open_clip
from moderator.models.manifest import load_manifest
from tests.export.conftest import FAMILIES, build_open_clip, torch

pytestmark = [pytest.mark.export]

TEXTS = ["a photo of a knife", "Two RED pills!", "", "  leading and trailing  ", "ünïcödé 🔪 日本語", "a very long prompt " * 30]


def _torch_embeddings(model, tokenizer, pixels_u8: np.ndarray, texts: list[str], manifest):
    x = torch.from_numpy(normalize(pixels_u8, manifest.preprocess.mean, manifest.preprocess.std))
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1).numpy()
    return img, txt


@pytest.mark.parametrize("arch", FAMILIES)
def test_open_clip_family_exports_with_parity(arch, tmp_path, siglip_tokenizer_dir):
    model, tokenizer = build_open_clip(arch, siglip_tokenizer_dir)
    report = export_open_clip(arch, tmp_path, model=model, tokenizer_dir=siglip_tokenizer_dir if "siglip" in arch else None)
    manifest = load_manifest(tmp_path)
    assert report.manifest == manifest
    assert manifest.family == ("siglip" if "siglip" in arch else "clip")
    assert (manifest.logit_bias is not None) == ("siglip" in arch)
    assert manifest.preprocess.image_size == model.visual.preprocess_cfg["size"][0]
    if arch == "test-mobileclip":
        assert manifest.preprocess.image_size == 256
    enc = OnnxEncoder(tmp_path)
    rng = np.random.default_rng(0)
    s = manifest.preprocess.image_size
    for n in (1, 5):  # export traced batch 2
        pixels = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
        texts = (TEXTS * 2)[:n]
        ref_img, ref_txt = _torch_embeddings(model, tokenizer, pixels, texts, manifest)
        assert np.abs(enc.encode_images(pixels) - ref_img).max() <= 1e-5
        # encode_texts tokenises through tokenizer.json: this also holds it to open_clip's tokenizer.
        np.testing.assert_array_equal(enc.tokenize(texts), tokenizer(texts).numpy())
        assert np.abs(enc.encode_texts(texts) - ref_txt).max() <= 1e-5
    assert max(report.max_abs_diff.values()) <= 1e-5
    enc.close()


@pytest.mark.slow
def test_full_size_vit_b_32_exports_with_parity(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, device="cpu").eval()
    export_open_clip("ViT-B-32", tmp_path, model=model)
    manifest = load_manifest(tmp_path)
    assert (manifest.embed_dim, manifest.preprocess.image_size, manifest.context_length) == (512, 224, 77)
    enc = OnnxEncoder(tmp_path)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    rng = np.random.default_rng(1)
    for n in (1, 3):
        pixels = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
        ref_img, ref_txt = _torch_embeddings(model, tokenizer, pixels, TEXTS[:n], manifest)
        assert np.abs(enc.encode_images(pixels) - ref_img).max() <= 1e-5
        assert np.abs(enc.encode_texts(TEXTS[:n]) - ref_txt).max() <= 1e-5
    enc.close()


def test_siglip_without_a_local_tokenizer_is_refused_with_the_way_out(tmp_path):
    model, _ = build_open_clip("test-openai-vit")
    with pytest.raises(ModelError, match="--tokenizer DIR"):
        export_open_clip("test-siglip", tmp_path)
    with pytest.raises(ModelError, match="drop --tokenizer"):
        export_open_clip("test-openai-vit", tmp_path, model=model, tokenizer_dir=tmp_path)


def test_unknown_architecture_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no architecture 'ViT-Q-99'"):
        export_open_clip("ViT-Q-99", tmp_path)
    with pytest.raises(ModelError, match=r"pretrained=laion2b_s34b_b79k are not in this machine's cache \(looked for hf://"):
        export_open_clip("ViT-B-32", tmp_path, pretrained="laion2b_s34b_b79k")  # a real tag, never downloaded here
    with pytest.raises(ModelError, match="neither a checkpoint file nor a pretrained tag"):
        export_open_clip("test-openai-vit", tmp_path, pretrained=str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot build open_clip test-openai-vit pretrained=.*garbage.pt"):
        export_open_clip("test-openai-vit", tmp_path, pretrained=str(garbage))


def test_an_operator_without_onnx_form_is_reported_not_hidden(tmp_path):
    from moderator.models.export.towers import export_tower

    class Eigen(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigh(x @ x.transpose(-1, -2))[0]

    with pytest.raises(ModelError, match=r"the image tower does not export to ONNX \(opset 17\).*eigh"):
        export_tower(torch, (Eigen(), lambda m, x: m(x)), torch.randn(2, 4, 4), tmp_path / "x.onnx", "pixel_values", "image_embeds", "test: the image tower")


def test_a_cached_tag_resolves_to_its_file_without_the_network(tmp_path, monkeypatch):
    """Hugging Face's cache layout; the file is what open_clip would have downloaded for the tag."""
    from huggingface_hub import constants

    from moderator.models.export.openclip import cached_checkpoint

    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs").mkdir()
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    path, cfg = cached_checkpoint("ViT-B-32", "openai")
    assert path == str(snapshot / "open_clip_model.safetensors")
    assert cfg["quick_gelu"] is True  # export builds the model with the activation the weights were trained with


def test_an_export_that_differs_from_torch_is_refused_and_leaves_no_manifest(tmp_path):
    model, _ = build_open_clip("test-openai-vit")
    export_open_clip("test-openai-vit", tmp_path, model=model)  # a good export first: its manifest must go too
    encode = model.encode_image
    model.encode_image = lambda x, normalize=False: encode(x) + 0.1 * torch.randn_like(encode(x))  # traced as a random op
    with pytest.raises(ModelError, match=r"the ONNX graphs differ from torch by .* \(> 1e-04\)"):
        export_open_clip("test-openai-vit", tmp_path, model=model)
    with pytest.raises(ModelError, match="not a model directory"):
        load_manifest(tmp_path)
