"""Coverage-guided fuzzing (atheris) of every target for a fixed time each: MODERATOR_FUZZ_SECONDS
(default 10; .ci/run sets the CI budget). A crash fails the test and prints the input, base64,
for tests/fuzz/corpus/<target>/ (where it is then replayed by tests/unit/test_fuzz_corpus.py)."""

from __future__ import annotations

import base64
import os
import resource
import subprocess
import sys

import pytest

from tests.fuzz import targets

SECONDS = int(os.environ.get("MODERATOR_FUZZ_SECONDS", "10"))

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", targets.TARGETS)
def test_fuzz(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris is in the dev extra")
    # libFuzzer's RSS limit reads the process's peak RSS, which Linux carries over fork and exec:
    # the child starts at this test process's peak (2.9 GB in CI), so the limit is set above it.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, str(SECONDS), str(tmp_path), f"-rss_limit_mb={4096 + inherited_mb}"],
        cwd=targets.REPO,
        capture_output=True,
        text=True,
        timeout=SECONDS + 300,
    )
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*")) + sorted(tmp_path.glob("oom-*"))
    found = "\n".join(f"{c.name}: {base64.b64encode(c.read_bytes()[:4096]).decode()}" for c in crashes)
    tail = "\n".join(proc.stderr.splitlines()[-40:])
    assert proc.returncode == 0 and not crashes, f"{target}: fuzzer found {len(crashes)} input(s)\n{found}\n{tail}"
    stats = {line.split(":")[2].strip(): line.rsplit(" ", 1)[-1] for line in proc.stderr.splitlines() if line.startswith("stat::")}
    assert int(stats.get("number_of_executed_units", 0)) > 0, tail
    print(f"{target}: {stats.get('number_of_executed_units')} runs in {SECONDS}s")
