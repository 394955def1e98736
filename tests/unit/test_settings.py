from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from moderator.errors import SettingsError
from moderator.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("MODERATOR_"):
            monkeypatch.delenv(key)


def test_defaults_are_valid():
    s = load_settings()
    assert s.kafka.input_topics == ("images",)
    assert s.batch.micro_batch_size == 32


def test_environment_with_nesting_and_topic_lists(monkeypatch):
    monkeypatch.setenv("MODERATOR_KAFKA__BOOTSTRAP_SERVERS", "broker:9093")
    monkeypatch.setenv("MODERATOR_KAFKA__INPUT_TOPICS", "a, b")
    monkeypatch.setenv("MODERATOR_BATCH__MICRO_BATCH_SIZE", "8")
    monkeypatch.setenv("MODERATOR_ENCODER__MODEL_DIR", "/models/x")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "broker:9093"
    assert s.kafka.input_topics == ("a", "b")
    assert s.batch.micro_batch_size == 8
    assert s.encoder.model_dir == Path("/models/x")
    monkeypatch.setenv("MODERATOR_MEDIA__BACKGROUND", "0,0,0")
    monkeypatch.setenv("MODERATOR_MEDIA__SECOND_BACKGROUND", "255,255,255")
    monkeypatch.setenv("MODERATOR_ENCODER__PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
    s = load_settings()
    assert s.media.background == (0, 0, 0) and s.media.second_background == (255, 255, 255)
    from moderator.app import decode_limits

    assert decode_limits(s).second_background == (255, 255, 255), "the service decodes with it"
    assert s.encoder.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    monkeypatch.setenv("MODERATOR_KAFKA__INPUT_TOPICS", '["x", "y"]')
    assert load_settings().kafka.input_topics == ("x", "y")


def test_yaml_file_with_environment_taking_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "moderator.yaml"
    cfg.write_text("kafka:\n  group_id: from-file\n  verdict_topic: v\nbatch:\n  micro_batch_size: 4\n")
    monkeypatch.setenv("MODERATOR_BATCH__MICRO_BATCH_SIZE", "16")
    s = load_settings(cfg)
    assert s.kafka.group_id == "from-file"
    assert s.kafka.verdict_topic == "v"
    assert s.batch.micro_batch_size == 16
    monkeypatch.setenv("MODERATOR_CONFIG", str(cfg))
    assert load_settings().kafka.group_id == "from-file"


def test_errors_name_the_field_and_the_variable(monkeypatch):
    monkeypatch.setenv("MODERATOR_BATCH__MICRO_BATCH_SIZE", "0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "batch.micro_batch_size" in str(err.value)
    assert "MODERATOR_BATCH__MICRO_BATCH_SIZE" in str(err.value)


def test_unknown_keys_and_bad_values_are_rejected(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafka:\n  bootstrap: x\n")
    with pytest.raises(SettingsError, match="kafka.bootstrap"):
        load_settings(cfg)
    with pytest.raises(SettingsError, match="must differ from the input topics"):
        load_settings(kafka={"input_topics": ["verdicts"], "verdict_topic": "verdicts"})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(SettingsError, match="background"):
        load_settings(media={"background": [0, 0, 300]})
    with pytest.raises(SettingsError, match="background"):
        load_settings(media={"second_background": [-1, 0, 0]})


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValidationError):
        s.batch.micro_batch_size = 3  # type: ignore[misc]


def test_every_setting_is_documented():
    from pydantic import BaseModel

    from moderator.settings import Settings
    from tests.conftest import REPO

    doc = (REPO / "docs" / "operations.md").read_text()

    def walk(model, prefix: str) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                out += walk(field.annotation, env + "__")  # nested sections, e.g. ENCODER__RAY__*
            else:
                out.append(env)
        return out

    names = walk(Settings, "MODERATOR_")
    assert "MODERATOR_ENCODER__RAY__ADDRESS" in names
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"docs/operations.md lacks {missing}"


def test_renamed_batch_settings_still_work_with_a_warning(monkeypatch):
    import warnings

    monkeypatch.setenv("MODERATOR_BATCH__MAX_SIZE", "8")
    monkeypatch.setenv("MODERATOR_ENCODER__RAY__MAX_BATCH_SIZE", "12")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_settings(encoder={"triton": {"max_batch_size": 5}})
    assert (s.batch.micro_batch_size, s.encoder.ray.replica_batch_size, s.encoder.triton.request_batch_size) == (8, 12, 5)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 3, messages
    assert any("use batch.micro_batch_size (MODERATOR_BATCH__MICRO_BATCH_SIZE)" in m for m in messages), messages
    monkeypatch.setenv("MODERATOR_BATCH__MICRO_BATCH_SIZE", "16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_settings().batch.micro_batch_size == 16, "the new name wins"
