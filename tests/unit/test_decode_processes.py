"""media.decode_mode: processes. Decoding in child processes gives the same frames and hashes as
decoding in threads, and a child that crashes, hangs or lies about one image costs that image its
dead letter and nothing else: the other images (in flight at the same time, and after) decode."""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import ImageOps

from moderator.errors import ImageTooLarge, StartupError, UndecodableImage, UnsupportedFormat
from moderator.hashing.compute import PdqHash
from moderator.media.decode import DecodeLimits
from moderator.media.processes import DecodeProcesses
from moderator.policy import compile_policy, load_policy
from moderator.processing import KnownContentOptions, Processor
from tests import decoders
from tests.conftest import TINY_POLICY
from tests.scenes import encode, scene


def gif(frames: int = 3) -> bytes:
    pictures = [scene(10 + i, (96, 64)) for i in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, "GIF", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return buf.getvalue()


IMAGES = [encode(scene(1), "JPEG", quality=85), encode(scene(2, (300, 200)), "PNG"), gif()]


class Restarts:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, why: str) -> None:
        with self._lock:
            self.seen.append(why)


@pytest.fixture
def restarts() -> Restarts:
    return Restarts()


@pytest.fixture
def hostile(restarts):
    pool = DecodeProcesses(2, decoders.hostile, hard_timeout_s=5.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=PdqHash)
    pool.start()
    yield pool
    pool.close()


def same(a, b) -> None:
    assert np.array_equal(a.pixels, b.pixels)
    fields = ("indices", "timestamps_ms", "total", "distinct", "overflow", "animated", "uncovered")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert a.hashes == b.hashes


def test_processes_decode_exactly_what_threads_decode(tiny_encoder):
    policy = compile_policy(load_policy(TINY_POLICY), tiny_encoder)
    threads = Processor(tiny_encoder, policy, DecodeLimits(), known=KnownContentOptions(pdq=True))
    processes = Processor(tiny_encoder, policy, DecodeLimits(), known=KnownContentOptions(pdq=True))
    pool = processes.decode_in_processes(2)
    try:
        assert len(pool.pids()) == 2 and os.getpid() not in pool.pids()
        wide = encode(scene(6, (3000, 200)), "PNG")  # too long for five squares: uncovered, an overflow
        framed = encode(ImageOps.expand(scene(7, (320, 240)), border=(30, 20), fill="black"), "PNG")  # a hash inside its border too
        for data in [*IMAGES, encode(scene(5, (2400, 1800)), "JPEG", quality=90), wide, framed]:
            a, b = threads.prepare(data), processes.prepare(data)
            assert a.error is None and b.error is None
            same(a.frames, b.frames)  # with their hashes' turns (hashing.pdq_turns, on by default)
            assert a.hashes == b.hashes and len(b.hashes.pdq) == len(b.frames.indices) >= 1
            assert all(len(h.turns) == 7 for h in b.frames.hashes), "the turns cross the pipe, for the deny lookups"
        assert processes.prepare(framed).frames.hashes[0].trimmed.turns, "and the hash inside the border, with its turns"
        assert processes.prepare(wide).frames.uncovered and processes.prepare(wide).frames.overflow
        bad = processes.prepare(b"GIF89a" + b"\0" * 40)  # a message error crosses back as itself
        assert bad.error is not None and type(bad.error) is type(threads.prepare(b"GIF89a" + b"\0" * 40).error)
    finally:
        processes.close()
    assert not any(_alive(pid) for pid in pool.pids())


def test_message_errors_cross_back_with_their_class_and_message(hostile):
    with pytest.raises(UnsupportedFormat) as caught:
        hostile(b"plain text, not an image")
    assert "format" in str(caught.value).lower()


def test_a_crashing_image_is_a_dead_letter_and_the_others_decode(hostile, restarts):
    before = hostile.pids()
    with pytest.raises(UndecodableImage, match="crashed"):
        hostile(decoders.SEGV)
    assert restarts.seen == ["crashed", "crashed"]  # the first child, then the fresh one it was retried in
    assert set(hostile.pids()) != set(before) and len(hostile.pids()) == 2
    same(hostile(IMAGES[0]), decoders.real(IMAGES[0]))


def test_an_image_crashed_in_a_child_is_retried_once_in_a_fresh_one(hostile, restarts, tmp_path):
    data = decoders.ONCE + str(tmp_path / "crashed").encode() + b"|" + IMAGES[0]
    same(hostile(data), decoders.real(IMAGES[0]))  # the machine's fault, not the image's: it gets its verdict
    assert restarts.seen == ["crashed"]


def test_images_in_flight_beside_a_crash_are_not_harmed(restarts):
    pool = DecodeProcesses(3, decoders.hostile, hard_timeout_s=10.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=PdqHash)
    pool.start()
    try:
        work = [IMAGES[i % 3] for i in range(18)]
        work[5] = work[11] = decoders.SEGV
        with ThreadPoolExecutor(3) as threads:
            results = list(threads.map(lambda d: _outcome(pool, d), work))
    finally:
        pool.close()
    for data, result in zip(work, results):
        if data == decoders.SEGV:
            assert isinstance(result, UndecodableImage)
        else:
            same(result, decoders.real(data))
    assert restarts.seen.count("crashed") == 4


def test_a_hanging_image_is_stopped_and_dead_lettered(restarts):
    pool = DecodeProcesses(1, decoders.hostile, hard_timeout_s=1.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=PdqHash)
    pool.start()
    try:
        hung = pool.pids()
        start = time.monotonic()
        with pytest.raises(ImageTooLarge, match="did not finish in 1s"):
            pool(decoders.HANG)
        assert time.monotonic() - start < 8  # stopped at the hard timeout, not retried (it would hang again)
        assert restarts.seen == ["timeout"]
        assert not _alive(hung[0])
        same(pool(IMAGES[1]), decoders.real(IMAGES[1]))
    finally:
        pool.close()


def test_an_image_that_wants_more_memory_than_the_budget_is_a_dead_letter_not_an_oom_kill(restarts):
    budget = 512 << 20
    pool = DecodeProcesses(1, decoders.hostile, hard_timeout_s=30.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=PdqHash, memory_bytes=budget)
    pool.start()
    try:
        pid = pool.pids()
        with pytest.raises(ImageTooLarge, match="needed more than 512 MB"):
            pool(decoders.GREEDY)
        assert restarts.seen == [] and pool.pids() == pid  # refused inside the child, which lives on
        same(pool(IMAGES[0]), decoders.real(IMAGES[0]))  # and still decodes within its budget
    finally:
        pool.close()


def test_a_child_that_lies_about_its_frames_is_not_believed(hostile, restarts):
    with pytest.raises(UndecodableImage):
        hostile(decoders.LIE + IMAGES[0])
    assert restarts.seen == ["crashed", "crashed"]
    same(hostile(IMAGES[0]), decoders.real(IMAGES[0]))


def test_a_child_that_sends_pixels_of_another_size_is_not_believed(hostile, restarts):
    with pytest.raises(UndecodableImage):
        hostile(decoders.HUGE + IMAGES[0])
    assert restarts.seen == ["crashed", "crashed"]
    same(hostile(IMAGES[0]), decoders.real(IMAGES[0]))


def test_a_child_that_cannot_start_stops_the_start_with_the_reason(restarts):
    pool = DecodeProcesses(2, decoders.dies, hard_timeout_s=30.0, max_frames=32, image_size=32, on_restart=restarts)
    with pytest.raises(StartupError, match=r"a decode process did not start \(exit code 3"):
        pool.start()
    assert pool.pids() == [] and _decode_children() == [] and restarts.seen == []


def test_hashes_are_refused_when_none_were_asked_for(restarts):
    pool = DecodeProcesses(1, decoders.real, hard_timeout_s=5.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=None)
    pool.start()
    try:
        with pytest.raises(UndecodableImage):
            pool(IMAGES[0])
    finally:
        pool.close()


def test_closed_processes_refuse_work_and_are_gone(restarts):
    pool = DecodeProcesses(2, decoders.real, hard_timeout_s=5.0, max_frames=32, image_size=32, on_restart=restarts, make_hash=PdqHash)
    pids = pool.start()
    pool.close()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError):
        pool(IMAGES[0])
    assert restarts.seen == []


def _outcome(pool: DecodeProcesses, data: bytes):
    try:
        return pool(data)
    except UndecodableImage as exc:
        return exc


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _decode_children() -> list[int]:
    """Live processes started by this one with multiprocessing's spawn (decode children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] not in ("Z", "X") and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found
