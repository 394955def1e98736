from __future__ import annotations

import numpy as np
import pytest

from moderator.encoders import Encoder, create_encoder
from moderator.encoders.onnx import OnnxEncoder, choose_providers, gpu_present
from moderator.errors import BackendError, ModelError
from moderator.settings import EncoderSettings


def test_onnx_encoder_implements_the_protocol(tiny_encoder):
    assert isinstance(tiny_encoder, Encoder)
    info = tiny_encoder.info()
    assert (info.backend, info.model_name, info.precision, info.embed_dim) == ("onnx", "tiny-random", "fp32", 32)
    assert "CPUExecutionProvider" in info.providers


def test_embeddings_are_normalised_and_independent_of_batch(tiny_encoder):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    batch = tiny_encoder.encode_images(pixels)
    single = np.concatenate([tiny_encoder.encode_images(pixels[i : i + 1]) for i in range(5)])
    assert batch.shape == (5, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert np.abs(batch - single).max() <= 1e-5
    texts = tiny_encoder.encode_texts(["a red knife", "a photo of fire"])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert tiny_encoder.encode_texts([]).shape == (0, 32)


def test_wrong_input_shape_is_refused(tiny_encoder):
    with pytest.raises(ValueError, match=r"expected uint8 \[N,64,64,3\]"):
        tiny_encoder.encode_images(np.zeros((1, 32, 32, 3), np.uint8))


def test_closed_encoder_raises_backend_error(tiny_model):
    enc = OnnxEncoder(tiny_model)
    enc.close()
    assert not enc.ready()
    with pytest.raises(BackendError, match="closed"):
        enc.encode_images(np.zeros((1, 64, 64, 3), np.uint8))


def test_missing_variant_and_provider_are_clear(tiny_model):
    with pytest.raises(ModelError, match="no 'int8' variant; the manifest has \\['fp32'\\]"):
        OnnxEncoder(tiny_model, precision="int8")
    with pytest.raises(ModelError, match="not installed"):
        OnnxEncoder(tiny_model, providers=["NoSuchExecutionProvider"])


def test_provider_choice_without_a_gpu_is_cpu_only():
    chosen = choose_providers(None)
    assert chosen[-1] == "CPUExecutionProvider"
    if not gpu_present():
        assert chosen == ["CPUExecutionProvider"]


def test_factory_builds_from_settings(tiny_model):
    enc = create_encoder(EncoderSettings(model_dir=tiny_model))
    assert enc.info().model_name == "tiny-random"
    enc.close()


@pytest.mark.parametrize(("env", "expected"), [(None, "0"), ("true", "1"), ("false", "0")])
def test_intra_op_spinning_is_what_the_settings_say_in_every_session(tiny_model, monkeypatch, env, expected):
    """Off by default (spinning threads take CPU from the decoders on shared cores), on when asked,
    from the environment as from any other settings source."""
    from moderator.settings import load_settings

    monkeypatch.setenv("MODERATOR_ENCODER__MODEL_DIR", str(tiny_model))
    if env is not None:
        monkeypatch.setenv("MODERATOR_ENCODER__INTRA_OP_SPINNING", env)
    enc = create_encoder(load_settings().encoder)
    try:
        for session in (enc._image, enc._text):
            assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == expected
    finally:
        enc.close()
