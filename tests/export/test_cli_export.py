"""`moderator models export` end to end: export, variants, verify, then serve it."""

from __future__ import annotations

import pytest

from moderator.cli.main import main
from moderator.encoders.onnx import OnnxEncoder
from moderator.models.manifest import load_manifest

pytestmark = [pytest.mark.export]


def test_export_cli_writes_a_verified_model_directory_with_variants(tmp_path, capsys):
    out = tmp_path / "model"
    assert (
        main(["models", "export", "--open-clip", "test-openai-vit", "--out", str(out), "--name", "tiny-openai", "--precision", "int8", "--precision", "fp16"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "ONNX vs torch max abs diff" in printed and "added the fp16 variant" in printed
    manifest = load_manifest(out)
    assert manifest.name == "tiny-openai" and sorted(manifest.variants) == ["fp16", "fp32", "int8"]
    assert manifest.source == "open_clip test-openai-vit pretrained=none (random weights)"
    assert "RANDOM WEIGHTS" in manifest.notes
    assert main(["models", "verify", str(out)]) == 0
    enc = OnnxEncoder(out, precision="int8")
    assert enc.encode_texts(["a knife"]).shape == (1, 32)
    enc.close()


def test_export_cli_refusals_exit_2_with_the_reason(tmp_path, capsys):
    assert main(["models", "export", "--open-clip", "test-siglip", "--out", str(tmp_path / "x")]) == 2
    assert "--tokenizer DIR" in capsys.readouterr().err
    assert main(["models", "export", "--hf", str(tmp_path), "--pretrained", "x", "--out", str(tmp_path / "y")]) == 2
    assert "--pretrained and --tokenizer are for --open-clip" in capsys.readouterr().err
