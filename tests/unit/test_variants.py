"""Precision variants (int8, fp16), the encoder's fp16 rule on CPU, and `models verify`/`info`."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from moderator.cli.main import main
from moderator.encoders.onnx import OnnxEncoder
from moderator.errors import ModelError
from moderator.models.inspect import model_info, verify_model_dir
from moderator.models.manifest import load_manifest
from moderator.models.quantize import add_variant
from tests.conftest import TINY_MODEL


@pytest.fixture
def model_dir(tmp_path):
    out = tmp_path / "model"
    shutil.copytree(TINY_MODEL, out)
    return out


def test_fp16_and_int8_variants_are_named_in_the_manifest_and_agree_with_fp32(model_dir):
    add_variant(model_dir, "fp16")
    manifest = add_variant(model_dir, "int8")
    assert sorted(manifest.variants) == ["fp16", "fp32", "int8"]
    assert load_manifest(model_dir, verify=True) == manifest
    info = model_info(model_dir, batch=8, repeats=1)
    assert info["variants"]["fp16"]["image_cosine_vs_fp32"]["min"] >= 0.999
    assert info["variants"]["fp16"]["text_cosine_vs_fp32"]["min"] >= 0.999
    assert info["variants"]["int8"]["image_cosine_vs_fp32"]["min"] >= 0.98
    assert info["variants"]["fp32"]["image_cosine_vs_fp32"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert all(v["cpu_images_per_s"] > 0 for v in info["variants"].values())
    assert info["variants"]["int8"]["bytes"] < info["variants"]["fp32"]["bytes"]
    with pytest.raises(ModelError, match="unknown precision"):
        add_variant(model_dir, "int4")


def test_fp16_on_cpu_serves_fp32_and_says_why(model_dir, caplog):
    add_variant(model_dir, "fp16")
    with caplog.at_level(logging.WARNING, logger="moderator.encoders.onnx"):
        enc = OnnxEncoder(model_dir, precision="fp16")
    assert enc.precision == "fp32" and enc.info().precision == "fp32"
    assert "fp16 variant needs a GPU execution provider" in caplog.text and "int8" in caplog.text
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ref = OnnxEncoder(model_dir)
    assert np.array_equal(enc.encode_images(pixels), ref.encode_images(pixels))
    enc.close(), ref.close()


def test_verify_passes_a_whole_directory_and_names_what_is_broken(model_dir, capsys):
    assert verify_model_dir(model_dir).ok
    assert main(["models", "verify", str(model_dir)]) == 0
    assert "verified" in capsys.readouterr().out
    # A graph replaced by another model's graph: checksum mismatch.
    shutil.copyfile(TINY_MODEL.parent / "default" / "text_encoder.onnx", model_dir / "text_encoder.onnx")
    result = verify_model_dir(model_dir)
    assert not result.ok and "text_encoder.onnx does not match its SHA-256" in result.checks[0].detail
    assert main(["models", "verify", str(model_dir)]) == 1
    assert "FAIL manifest and checksums" in capsys.readouterr().out


def test_verify_checks_graph_shapes_against_the_manifest(model_dir):
    manifest = load_manifest(model_dir)
    from moderator.models.manifest import save_manifest

    save_manifest(model_dir, manifest.model_copy(update={"embed_dim": 64}))  # the graphs output 32
    result = verify_model_dir(model_dir)
    failed = [c for c in result.checks if not c.ok]
    assert failed and all("output" in c.name for c in failed)
    assert "expects image_embeds [N,64]" in failed[0].detail


def test_info_cli_prints_text_and_json(model_dir, capsys):
    add_variant(model_dir, "int8")
    assert main(["models", "info", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert "tiny-random" in text and "int8" in text and "cos vs fp32" in text
    assert main(["models", "info", str(model_dir), "--json", "--no-measure"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["variants"]) == ["fp32", "int8"] and "measured" not in info
    assert info["checksum"] == load_manifest(model_dir).checksum()
