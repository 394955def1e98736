"""The one retry helper: full jitter under an exponential cap, stop events, deadlines, attempts."""

from __future__ import annotations

import random
import threading

import pytest

from moderator.retry import Backoff, RetryStopped, retry


def test_full_jitter_draws_below_a_doubling_capped_cap():
    b = Backoff.from_ms(100, 1000)
    assert [b.cap(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(2000)]
    assert 0.0 <= min(delays) < 0.05 and 0.75 < max(delays) <= 0.8, "uniform over [0, cap]"
    assert 0.35 < sum(delays) / len(delays) < 0.45
    assert len({round(d, 6) for d in delays}) > 1900, "workers that failed together do not retry together"


def test_retry_returns_after_failures_and_reports_each():
    calls, seen = [], []

    def step():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    out = retry(step, on=ConnectionError, backoff=Backoff(0.001, 0.002), on_failure=lambda e, n, d: seen.append((str(e), n)))
    assert out == "up" and seen == [("down", 1), ("down", 2)]


def test_other_exceptions_are_not_retried():
    with pytest.raises(KeyError):
        retry(lambda: {}["x"], on=ConnectionError, backoff=Backoff(0.001, 0.001))


def test_attempts_timeout_and_stop_end_the_loop_with_the_last_error():
    def down():
        raise ConnectionError("down")

    with pytest.raises(RetryStopped) as err:
        retry(down, on=ConnectionError, backoff=Backoff(0.001, 0.001), attempts=3)
    assert err.value.attempts == 3 and isinstance(err.value.last, ConnectionError)
    with pytest.raises(RetryStopped):
        retry(down, on=ConnectionError, backoff=Backoff(0.01, 0.01), timeout_s=0.05)
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    with pytest.raises(RetryStopped):
        retry(down, on=ConnectionError, backoff=Backoff(10.0, 10.0), stop=stop)  # the wait is cut short by stop
    timer.join()
