"""The TensorRT engine builder's refusals (building needs tensorrt and a GPU: benchmarks/gpu.sh)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moderator.cli.main import main
from moderator.errors import ModelError
from moderator.models.tensorrt import Profile, build_engines
from tests.conftest import REPO, TINY_MODEL


def test_profile_must_be_ordered():
    assert Profile(1, 32, 256).max_batch == 256
    for bad in ((0, 1, 2), (4, 2, 8), (1, 8, 4)):
        with pytest.raises(ModelError, match="1 <= min <= opt <= max"):
            Profile(*bad)


def test_without_tensorrt_the_builder_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    with pytest.raises(ModelError, match="needs the tensorrt package and an NVIDIA GPU"):
        build_engines(TINY_MODEL)
    assert main(["models", "tensorrt", str(TINY_MODEL)]) == 2
    assert "pip install tensorrt" in capsys.readouterr().err


def test_tensorrt_11_needs_the_fp16_variant(monkeypatch):
    import types

    # TensorRT 11 as far as the builder looks before touching a GPU: no FP16 builder flag.
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.4.0", BuilderFlag=types.SimpleNamespace()))
    with pytest.raises(ModelError, match="strongly typed networks only: add the fp16 variant first"):
        build_engines(TINY_MODEL)


def test_gpu_benchmark_refuses_a_machine_without_a_gpu_driver(tmp_path):
    import os
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with the script's tools and no nvidia-smi
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mktemp"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu.sh"), str(tmp_path / "work")], capture_output=True, text=True, timeout=60, env={"PATH": str(bin_dir)})
    assert proc.returncode == 2 and "no NVIDIA driver" in proc.stderr
