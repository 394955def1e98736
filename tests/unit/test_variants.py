"""Precision variants (int8, fp16), the encoder's fp16 rule on CPU, and `models verify`/`info`."""

from __future__ import annotations

import json
import shutil

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


def test_fp16_on_cpu_is_refused_with_the_reason(model_dir):
    """The precision asked for is served or refused: fp16 used to fall back to fp32 with a warning,
    so a deployment sized and calibrated for one variant silently served another."""
    add_variant(model_dir, "fp16")
    with pytest.raises(ModelError, match="precision fp16 needs a GPU execution provider") as exc:
        OnnxEncoder(model_dir, precision="fp16", providers=["CPUExecutionProvider"])
    assert "int8 on CPUs" in str(exc.value)
    add_variant(model_dir, "int8")
    enc = OnnxEncoder(model_dir, precision="int8")
    assert enc.precision == "int8" and enc.info().precision == "int8"
    enc.close()


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


def test_verify_and_info_report_a_graph_that_loads_but_cannot_run(model_dir, capsys):
    import onnx
    from onnx import TensorProto, helper

    from moderator.models.manifest import IMAGE_INPUT, IMAGE_OUTPUT, save_manifest, sha256_file

    manifest = load_manifest(model_dir)
    s, d = manifest.preprocess.image_size, manifest.embed_dim

    # Declared as the manifest says, but reshapes a batch of N embeddings to N + 1 rows at run time
    # (the shape is computed from the input, so loading and shape inference accept it).
    def const(name, values):
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [IMAGE_INPUT], ["flat"], axis=1),
            helper.make_node("Slice", ["flat", "zero", "dim", "one"], ["embeds"]),
            helper.make_node("Shape", [IMAGE_INPUT], ["shape"]),
            helper.make_node("Slice", ["shape", "zero", "one", "zero"], ["n"]),
            helper.make_node("Add", ["n", "one"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus_one"], ["rows"], axis=0),
            helper.make_node("Reshape", ["embeds", "rows"], [IMAGE_OUTPUT]),
        ],
        "broken",
        [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, ["N", 3, s, s])],
        [helper.make_tensor_value_info(IMAGE_OUTPUT, TensorProto.FLOAT, ["N", d])],
        [const("zero", [0]), const("one", [1]), const("dim", [d]), const("minus_one", [-1])],
    )
    path = model_dir / manifest.variants["fp32"].image_encoder.path
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", manifest.opset)], ir_version=onnx.load(str(path)).ir_version)
    onnx.save(model, str(path))
    fp32 = manifest.variants["fp32"]
    image = fp32.image_encoder.model_copy(update={"sha256": sha256_file(path)})
    save_manifest(model_dir, manifest.model_copy(update={"variants": {"fp32": fp32.model_copy(update={"image_encoder": image})}}))

    result = verify_model_dir(model_dir)
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == [f"fp32 image encoder ({path.name}): forward pass"], failed
    assert "onnxruntime failed running batch 4" in failed[0].detail
    with pytest.raises(ModelError, match="the fp32 graphs do not run"):
        model_info(model_dir, batch=8, repeats=1)
    assert main(["models", "info", str(model_dir)]) == 2
    assert "moderator models verify" in capsys.readouterr().err


def test_info_names_variant_files_that_are_missing(model_dir):
    manifest = add_variant(model_dir, "int8")
    (model_dir / manifest.variants["int8"].text_encoder.path).unlink()
    with pytest.raises(ModelError, match=r"text_encoder\.int8\.onnx named in the manifest is missing"):
        model_info(model_dir, measure=False)


def test_info_cli_prints_text_and_json(model_dir, capsys):
    add_variant(model_dir, "int8")
    assert main(["models", "info", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert "tiny-random" in text and "int8" in text and "cos vs fp32" in text
    assert main(["models", "info", str(model_dir), "--json", "--no-measure"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["variants"]) == ["fp32", "int8"] and "measured" not in info
    assert info["checksum"] == load_manifest(model_dir).checksum()


def test_add_variant_records_its_agreement_and_measure_records_it_for_older_manifests(model_dir, capsys):
    manifest = add_variant(model_dir, "int8")
    found = manifest.variants["int8"].agreement
    assert found is not None and 0.98 <= found.image_cosine_min <= found.image_cosine_mean < 1.0
    assert found.text_cosine_min <= found.text_cosine_mean <= 1.0 and "16 pictograms" in found.probe
    checksum = manifest.checksum()
    # An older manifest (written before agreement was recorded): measure fills it in, graphs untouched.
    _forget_agreement(model_dir, manifest)
    assert main(["models", "measure", str(model_dir)]) == 0
    assert "int8 vs fp32: image cosine min" in capsys.readouterr().out
    again = load_manifest(model_dir, verify=True)
    assert again.variants["int8"].agreement == found and again.checksum() == checksum


def test_precision_auto_serves_the_fastest_variant_that_agrees_with_fp32(model_dir):
    add_variant(model_dir, "fp16")
    add_variant(model_dir, "int8")
    enc = OnnxEncoder(model_dir, precision="auto", providers=["CPUExecutionProvider"])
    try:
        rates = {name: float(why.split()[0]) for name, why in enc.auto.items() if why.endswith("images/s")}
        assert set(rates) == {"fp32", "int8"}, enc.auto  # both measured here; fp16 is not a CPU variant
        assert enc.precision == max(rates, key=lambda n: rates[n]) and enc.info().precision == enc.precision
        assert enc.auto["fp16"] == "not measured: fp16 needs a GPU provider"
    finally:
        enc.close()


def test_precision_auto_never_serves_a_variant_under_the_agreement_floor_or_without_figures(model_dir):
    manifest = add_variant(model_dir, "int8")
    worst = manifest.variants["int8"].agreement.worst
    enc = OnnxEncoder(model_dir, precision="auto", auto_min_cosine=min(1.0, worst + 1e-6))
    assert enc.precision == "fp32" and enc.auto["fp32"] == "the only candidate"
    assert enc.auto["int8"].startswith(f"not measured: cosine to fp32 {worst:.6f} is under auto_min_cosine")
    enc.close()
    _forget_agreement(model_dir, manifest)
    enc = OnnxEncoder(model_dir, precision="auto")
    assert enc.precision == "fp32" and "moderator models measure" in enc.auto["int8"]
    enc.close()


def test_precision_auto_is_refused_where_the_variants_run_elsewhere():
    from moderator.errors import SettingsError
    from moderator.settings import load_settings

    for backend in ("ray", "triton"):
        with pytest.raises(SettingsError, match="precision auto measures the variants on this machine"):
            load_settings(encoder={"backend": backend, "precision": "auto"})
    assert load_settings(encoder={"precision": "auto"}).encoder.precision == "auto"


def _forget_agreement(model_dir, manifest) -> None:
    """The manifest as written before agreement was recorded."""
    from moderator.models.manifest import save_manifest

    int8 = manifest.variants["int8"].model_copy(update={"agreement": None})
    save_manifest(model_dir, manifest.model_copy(update={"variants": {**manifest.variants, "int8": int8}}))
