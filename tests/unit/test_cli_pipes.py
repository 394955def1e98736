"""Every command survives a closed stdout (issue: policy tools that never mislead, 4):
``moderator scan --json | head`` stops quietly, as Unix tools do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

EXAMPLES = str(REPO / "examples" / "images")


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "--json", EXAMPLES],
        ["scan", EXAMPLES],
        ["hashes", "compute", "--json", EXAMPLES],
    ],
    ids=["scan-json", "scan-table", "hashes-compute"],
)
def test_a_closed_pipe_ends_the_command_quietly(args):
    proc = subprocess.Popen([sys.executable, "-m", "moderator", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    _, err = proc.communicate(timeout=300)
    assert first, "the command wrote something first"
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]
    assert proc.returncode == 141, "128 + SIGPIPE, as a Unix tool killed by the closed pipe"


def test_bench_measures_the_precision_the_settings_ask_for(monkeypatch, tmp_path):
    """`MODERATOR_ENCODER__PRECISION=int8 moderator bench` once measured fp32: the service it
    starts does not inherit MODERATOR_* variables, so the precision is now read here and passed."""
    import argparse

    from moderator.cli.bench import requested_precision

    args = argparse.Namespace(precision=None, config=None)
    assert requested_precision(args) == "fp32"
    monkeypatch.setenv("MODERATOR_ENCODER__PRECISION", "int8")
    assert requested_precision(args) == "int8"
    config = tmp_path / "s.yaml"
    config.write_text("encoder: {precision: fp16}\n")
    monkeypatch.delenv("MODERATOR_ENCODER__PRECISION")
    assert requested_precision(argparse.Namespace(precision=None, config=config)) == "fp16"
    assert requested_precision(argparse.Namespace(precision="fp32", config=config)) == "fp32", "--precision wins"
