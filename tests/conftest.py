from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "models" / "tiny-random"
TINY_POLICY = REPO / "policies" / "tiny-random.yaml"

# The export parity tests run torch, open_clip and transformers: the export extra (~6 GB, a CUDA
# torch from PyPI). `make test` installs it; an install without it (pip install -e '.[dev]') runs
# everything else and says so in the header, rather than failing to import.
HAS_EXPORT_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("torch", "open_clip", "transformers"))
collect_ignore = [] if HAS_EXPORT_EXTRA else ["export"]


def pytest_report_header(config) -> list[str]:
    if HAS_EXPORT_EXTRA:
        return []
    return ["tests/export not collected: the export extra is not installed (pip install -e '.[dev,export]')"]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY_MODEL


@pytest.fixture(scope="session")
def tiny_encoder():
    from moderator.encoders.onnx import OnnxEncoder

    enc = OnnxEncoder(TINY_MODEL)
    yield enc
    enc.close()
