"""The builder's ONNX graphs against an independent numpy CLIP, and the model directory contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from moderator.errors import ModelError
from moderator.models.builder import (
    build_image_graph,
    build_random_model,
    build_text_graph,
    init_random_weights,
    list_architectures,
    load_architecture,
)
from moderator.models.manifest import load_manifest
from moderator.models.tokenizer import TextTokenizer
from tests.unit import clip_reference as ref

TOL = 1e-5


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny():
    cfg = load_architecture("tiny")
    return cfg, init_random_weights(cfg, seed=3)


@pytest.mark.parametrize("batch", [1, 3])
def test_image_graph_matches_numpy_reference(tiny, batch):
    cfg, w = tiny
    x = np.random.default_rng(batch).standard_normal((batch, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
    got = _session(build_image_graph(cfg, w)).run(None, {"pixel_values": x})[0]
    want = ref.encode_image(cfg, w, x)
    assert got.shape == (batch, cfg.embed_dim)
    assert np.abs(got - want).max() <= TOL, f"max abs diff {np.abs(got - want).max():.2e} > {TOL}"


def test_image_graph_with_a_convolutional_stem_matches_numpy_reference():
    # The default model's hybrid ViT (pictoclip: 3x3 stride-2 convolutions before the patches), GELU.
    cfg = load_architecture("tiny", vision_stem=[8, 16], act="gelu")
    assert cfg.patch_kernel == 4 and cfg.patch_in_channels == 16
    w = init_random_weights(cfg, seed=5)
    w = {k: v + (0.1 if k.endswith("stem.0.bias") else 0.0) for k, v in w.items()}  # non-zero biases are used
    x = np.random.default_rng(0).standard_normal((2, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
    got = _session(build_image_graph(cfg, w)).run(None, {"pixel_values": x})[0]
    want = ref.encode_image(cfg, w, x)
    assert np.abs(got - want).max() <= TOL, f"max abs diff {np.abs(got - want).max():.2e} > {TOL}"
    # A stem that downsamples past the patch is refused.
    with pytest.raises(ModelError, match="stem"):
        load_architecture("tiny", patch_size=16, vision_stem=[8, 8, 8, 8, 8])


@pytest.mark.parametrize("batch", [1, 4])
def test_text_graph_matches_numpy_reference(tiny, batch):
    cfg, w = tiny
    rng = np.random.default_rng(batch)
    ids = rng.integers(3, cfg.vocab_size, (batch, cfg.context_length))
    for row in range(batch):  # a start token, then an end-of-text token at a different place per row
        ids[row, 0] = 1
        eot = 2 + row * 3
        ids[row, eot] = cfg.eot_token_id
        ids[row, eot + 1 :] = 0
    got = _session(build_text_graph(cfg, w)).run(None, {"input_ids": ids})[0]
    want = ref.encode_text(cfg, w, ids)
    assert np.abs(got - want).max() <= TOL, f"max abs diff {np.abs(got - want).max():.2e} > {TOL}"


def test_text_padding_after_eot_does_not_change_the_embedding(tiny):
    cfg, w = tiny
    ids = np.zeros((2, cfg.context_length), np.int64)
    ids[:, :4] = [1, 10, 11, cfg.eot_token_id]
    ids[1, 4:] = 77  # garbage after the end-of-text token is masked by causality
    got = _session(build_text_graph(cfg, w)).run(None, {"input_ids": ids})[0]
    assert np.abs(got[0] - got[1]).max() <= TOL


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ModelError, match="known: .*tiny.*vit-b-32"):
        load_architecture("vit-z-99")
    assert {"tiny", "vit-b-32"} <= set(list_architectures())


def test_vit_b_32_config_is_the_real_shape():
    cfg = load_architecture("vit-b-32")
    assert (cfg.image_size, cfg.patch_size, cfg.vision_width, cfg.vision_layers, cfg.embed_dim) == (224, 32, 768, 12, 512)


def test_inconsistent_config_is_refused():
    with pytest.raises(ModelError, match="not a multiple"):
        load_architecture("tiny", patch_size=15)


def test_model_dir_round_trip_and_checksums(tmp_path):
    manifest = build_random_model(tmp_path / "m", "tiny", seed=1)
    loaded = load_manifest(tmp_path / "m")
    assert loaded == manifest
    assert loaded.checksum() == manifest.checksum()
    # A flipped byte in a graph is caught by the checksum.
    path = tmp_path / "m" / "image_encoder.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="image_encoder.onnx does not match its SHA-256"):
        load_manifest(tmp_path / "m")
    assert load_manifest(tmp_path / "m", verify=False).name == "tiny-random"


def test_missing_files_and_bad_manifest_are_clear(tmp_path, tiny_model):
    with pytest.raises(ModelError, match="not a model directory"):
        load_manifest(tmp_path)
    shutil.copytree(tiny_model, tmp_path / "m")
    (tmp_path / "m" / "text_encoder.onnx").unlink()
    with pytest.raises(ModelError, match="text_encoder.onnx named in the manifest is missing"):
        load_manifest(tmp_path / "m")
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    manifest["preprocess"]["std"] = [0, 1, 1]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="std components must be positive"):
        load_manifest(tmp_path / "m")


@pytest.mark.parametrize("path", ["/etc/hostname", "../tiny-random/image_encoder.onnx", "sub/../../x.onnx", "..\\x.onnx"])
def test_a_manifest_cannot_name_files_outside_its_directory(tmp_path, tiny_model, path):
    shutil.copytree(tiny_model, tmp_path / "m")
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    manifest["variants"]["fp32"]["image_encoder"]["path"] = path
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="a file of the model directory, as a relative path"):
        load_manifest(tmp_path / "m", verify=False)


def test_a_manifest_that_is_not_a_small_json_file_is_refused(tmp_path, tiny_model):
    shutil.copytree(tiny_model, tmp_path / "m")
    target = tmp_path / "m" / "manifest.json"
    target.write_text("[" * 100_000 + "]" * 100_000)  # nested past the parser's depth
    with pytest.raises(ModelError, match="invalid manifest"):
        load_manifest(tmp_path / "m")
    target.write_text(" " * (2 * 1024 * 1024) + "{}")
    with pytest.raises(ModelError, match="over the 1048576-byte limit"):
        load_manifest(tmp_path / "m")


def test_checked_in_tiny_model_is_reproducible(tmp_path, tiny_model):
    """models/build_random_clip.py rebuilds models/tiny-random byte for byte."""
    rebuilt = build_random_model(tmp_path / "tiny", "tiny", seed=0, name="tiny-random")
    assert rebuilt.checksum() == load_manifest(tiny_model).checksum()


def test_tokenizer_keeps_end_token_when_truncating(tiny_model):
    m = load_manifest(tiny_model)
    tok = TextTokenizer(tiny_model / "tokenizer.json", m.context_length, m.pad_token_id)
    texts = ["a red knife", "knife " * 100, "", "  Mixed CASE   spaces  ", "émoji 😀 日本語 العربية"]
    ids = tok(texts)
    assert ids.shape == (len(texts), m.context_length)
    assert (ids[:, 0] == 1).all(), "every row starts with <|startoftext|>"
    for row, text in zip(ids, texts):
        assert (row == 2).sum() == 1, f"exactly one <|endoftext|> for {text!r}: {row}"
    assert ids[1, -1] == 2, "a long text is truncated with its end token kept"
    assert (ids[2, :2] == [1, 2]).all() and (ids[2, 2:] == 0).all(), "empty text is start, end, padding"
    np.testing.assert_array_equal(tok(["  mixed case spaces"])[0], ids[3])  # normalised: case and whitespace
    with pytest.raises(TypeError):
        tok("one string")
