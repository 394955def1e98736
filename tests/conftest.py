from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "models" / "tiny-random"
TINY_POLICY = REPO / "policies" / "tiny-random.yaml"


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY_MODEL


@pytest.fixture(scope="session")
def tiny_encoder():
    from moderator.encoders.onnx import OnnxEncoder

    enc = OnnxEncoder(TINY_MODEL)
    yield enc
    enc.close()
