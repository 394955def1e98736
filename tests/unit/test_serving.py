"""Triton repository generation and the Ray Serve deployment's configuration (no servers)."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from moderator.cli.main import main
from moderator.errors import ModelError, SettingsError
from moderator.models.manifest import load_manifest
from moderator.serving.triton_repo import CHECKSUM_PARAMETER, RepoOptions, write_repository
from moderator.settings import load_settings
from tests.conftest import TINY_MODEL


def parse(path) -> model_config_pb2.ModelConfig:
    """Triton's own ModelConfig message: unknown fields or wrong types fail to parse."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_configs_are_valid_triton_model_configs(tmp_path):
    image_dir, text_dir = write_repository(TINY_MODEL, tmp_path, RepoOptions(max_batch_size=24, instances=2))
    manifest = load_manifest(TINY_MODEL)
    image, text = parse(image_dir / "config.pbtxt"), parse(text_dir / "config.pbtxt")
    assert (image.name, text.name) == ("moderator_image", "moderator_text")
    for cfg in (image, text):
        assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 24
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
        assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert cfg.parameters[CHECKSUM_PARAMETER].string_value == manifest.checksum()
        assert cfg.parameters["moderator_precision"].string_value == "fp32"
        assert not cfg.HasField("optimization")
    assert [(i.name, i.data_type, list(i.dims)) for i in image.input] == [("pixels", model_config_pb2.TYPE_UINT8, [64, 64, 3])]
    assert [(o.name, list(o.dims)) for o in image.output] == [("image_embeds", [32])]
    assert [(i.name, i.data_type, list(i.dims)) for i in text.input] == [("input_ids", model_config_pb2.TYPE_INT64, [manifest.context_length])]
    assert (image_dir / "1" / "model.onnx").is_file() and (text_dir / "1" / "model.onnx").is_file()


def test_tensorrt_accelerator_only_for_gpu_instances(tmp_path):
    gpu = parse(write_repository(TINY_MODEL, tmp_path / "g", RepoOptions(tensorrt=True))[0] / "config.pbtxt")
    (accel,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    cpu = parse(write_repository(TINY_MODEL, tmp_path / "c", RepoOptions(tensorrt=True, kind="KIND_CPU"))[0] / "config.pbtxt")
    assert not cpu.HasField("optimization")


def test_an_engine_makes_the_model_tensorrt_plan(tmp_path):
    # Engine bytes are opaque here (building one needs a GPU); the repository layout and config are not.
    repo = tmp_path / "repo"
    image_dir, _ = write_repository(TINY_MODEL, repo)
    engine = image_dir / "1" / "image.plan"  # built next to the graph, inside the folder being replaced
    engine.write_bytes(b"engine-bytes")
    image_dir, text_dir = write_repository(TINY_MODEL, repo, RepoOptions(image_engine=engine, tensorrt=True))
    image, text = parse(image_dir / "config.pbtxt"), parse(text_dir / "config.pbtxt")
    assert image.platform == "tensorrt_plan" and not image.HasField("optimization")
    assert image.parameters["moderator_precision"].string_value == "tensorrt"
    assert sorted(p.name for p in (image_dir / "1").iterdir()) == ["model.plan"]
    assert (image_dir / "1" / "model.plan").read_bytes() == b"engine-bytes"
    assert text.platform == "onnxruntime_onnx" and (text_dir / "1" / "model.onnx").is_file()
    assert not list(repo.glob(".*staging"))
    with pytest.raises(ModelError, match="GPU instances only"):
        write_repository(TINY_MODEL, tmp_path / "cpu", RepoOptions(image_engine=image_dir / "1" / "model.plan", kind="KIND_CPU"))
    with pytest.raises(ModelError, match=r"trtexec --onnx=.*moderator_image/1/model.onnx .*--maxShapes=pixels:64x64x64x3"):
        write_repository(TINY_MODEL, tmp_path / "missing", RepoOptions(image_engine=tmp_path / "nope.plan"))


def test_uint8_image_graph_computes_what_the_in_process_encoder_computes(tmp_path, tiny_encoder):
    import onnxruntime as ort

    image_dir, text_dir = write_repository(TINY_MODEL, tmp_path)
    session = ort.InferenceSession(str(image_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(3).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    (got,) = session.run(["image_embeds"], {"pixels": pixels})
    assert np.abs(got - tiny_encoder.encode_images(pixels)).max() <= 1e-6
    text = ort.InferenceSession(str(text_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = tiny_encoder.tokenize(["a knife", ""])
    (emb,) = text.run(["text_embeds"], {"input_ids": ids})
    assert np.abs(emb - tiny_encoder.encode_texts(["a knife", ""])).max() <= 1e-6


def test_repository_refuses_a_missing_precision_and_a_bad_kind(tmp_path):
    with pytest.raises(ModelError, match="no 'fp16' variant"):
        write_repository(TINY_MODEL, tmp_path, RepoOptions(precision="fp16"))
    with pytest.raises(ModelError, match="KIND_GPU or KIND_CPU"):
        write_repository(TINY_MODEL, tmp_path, RepoOptions(kind="KIND_TPU"))


def test_triton_repo_cli(tmp_path, capsys):
    assert main(["models", "triton-repo", str(TINY_MODEL), "--out", str(tmp_path), "--kind", "cpu", "--prefix", "clip", "--max-batch-size", "8"]) == 0
    cfg = parse(tmp_path / "clip_image" / "config.pbtxt")
    assert cfg.max_batch_size == 8 and cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert "MODERATOR_ENCODER__TRITON__IMAGE_MODEL=clip_image" in capsys.readouterr().out
    assert main(["models", "triton-repo", str(TINY_MODEL), "--out", str(tmp_path), "--max-batch-size", "0"]) == 2
    assert main(["models", "triton-repo", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2


def test_backend_settings_validate():
    s = load_settings(encoder={"backend": "ray", "ray": {"address": "auto", "num_replicas": 2, "max_replicas": 4}})
    assert s.encoder.ray.max_replicas == 4
    with pytest.raises(SettingsError, match="max_replicas must be at least num_replicas"):
        load_settings(encoder={"ray": {"num_replicas": 3, "max_replicas": 2}})
    with pytest.raises(SettingsError, match="MODERATOR_ENCODER__BACKEND"):
        load_settings(encoder={"backend": "tensorflow"})
    with pytest.raises(SettingsError, match="MODERATOR_ENCODER__TRITON__PROTOCOL"):
        load_settings(encoder={"triton": {"protocol": "websocket"}})


def test_encoder_deployment_is_sized_from_settings():
    from moderator.encoders.ray_server import encoder_deployment

    fixed = encoder_deployment(load_settings(encoder={"ray": {"num_replicas": 3, "max_ongoing_requests": 48, "num_gpus": 0.5}}).encoder)
    assert fixed.name == "Encoder" and fixed.num_replicas == 3 and fixed.max_ongoing_requests == 48
    assert fixed.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 0.5}
    auto = encoder_deployment(load_settings(encoder={"ray": {"num_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2}}).encoder)
    scaling = auto._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 4, 2)
