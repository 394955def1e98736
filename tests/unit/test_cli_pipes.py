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
