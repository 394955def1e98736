"""After a stop signal the process ends within shutdown_timeout_s + shutdown_grace_s whatever
it is blocked on (a client call that never returns, a wedged thread)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import REPO


def test_the_exit_deadline_ends_a_process_that_is_blocked():
    program = (
        "import threading\n"
        "from moderator.app import start_exit_deadline\n"
        "start_exit_deadline(0.5)\n"
        "threading.Event().wait()  # blocked for good, as a stuck client call would be\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert "exiting now" in proc.stderr
    assert took < 30, f"took {took:.1f}s"
