"""Decoding in child processes (``media.decode_mode: processes``): decode, frame selection, PDQ
and preprocess of each image run in a child process instead of the worker's own threads.

Why: parts of the per-image path hold the GIL (PDQ's C++ core, Pillow's per-frame bookkeeping,
numpy), so decode threads cannot use more cores than the GIL lets them, while the Kafka client's
and the encoder's threads need it too. Which wins depends on cores per worker: measured in
docs/benchmarks.md#threads-or-processes.

Isolation comes with it, held to the rule that one message costs at most its own dead letter:

- each child decodes **one image at a time**, so whatever happens to a child is about that image;
- a child that **crashes** (a segfault in a codec on hostile bytes, the kernel's OOM killer) is
  replaced and the image is decoded once more in a fresh child (a crash can be the machine's,
  not the image's); if it crashes that one too, the image is an ``undecodable_image`` dead letter;
- a child that **hangs** past ``hard_timeout_s`` (the cooperative ``max_decode_seconds`` checks run
  between frames; one frame stuck inside a codec never reaches them) is killed and replaced, and
  the image is an ``image_too_large`` dead letter (a second try would hang as long again).

The channel is a pipe per child carrying bytes, never pickles, from the child: a codec exploit
that took over a child could otherwise send the service a pickle that runs code in it. The child
sends a small JSON header (sizes, frame positions, PDQ hashes, or an error's class and message)
and the raw pixels; the service checks the header against its bounds and the pixels' length
against the header. Children start with ``spawn``: a fresh interpreter (never ``fork``: the
service has Kafka and onnxruntime threads whose locks a forked child could inherit held) and no
temporary files (``forkserver`` needs a socket file, and the image's root is read-only).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import resource
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from moderator import errors
from moderator.errors import ImageTooLarge, MessageError, StartupError, UndecodableImage
from moderator.media.frames import FrameSet
from moderator.media.heap import keep_heap

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 4 << 20  # a header names at most 2 * max_frames * squares_per_frame (<= 18432) rows of ~100 bytes: under this
MAX_MESSAGE_CHARS = 1000  # an error message from a child, as much as a dead letter's header shows
_ERRORS: dict[str, type[MessageError]] = {cls.__name__: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, MessageError)}


def _serve(conn, decode: Callable[[bytes], FrameSet], memory_bytes: int | None = None) -> None:
    """A child's loop: image bytes in, header and pixels out, until the service closes the pipe."""
    # Ctrl-C in a terminal reaches the whole process group; the service decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_heap()
    budget = _limit_memory(memory_bytes)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            frames = decode(data)
            header, pixels = _header(frames), np.ascontiguousarray(frames.pixels, np.uint8)
        except MessageError as exc:
            header, pixels = {"error": type(exc).__name__, "message": str(exc)[:MAX_MESSAGE_CHARS]}, None
        except MemoryError:  # the address-space limit: this image needs more than the budget
            why = f"more than {budget} MB (media.decode_memory_mb)" if budget is not None else "more memory than the machine gave"
            header, pixels = {"error": "ImageTooLarge", "message": f"decoding needed {why}"}, None
        except Exception as exc:  # a decoder bug on hostile input: that message's dead letter
            detail = f"decoder failed unexpectedly ({type(exc).__name__}): {exc}"
            header, pixels = {"error": "UndecodableImage", "message": detail[:MAX_MESSAGE_CHARS]}, None
        conn.send_bytes(json.dumps(header).encode())
        if pixels is not None:
            conn.send_bytes(pixels.tobytes())


def _limit_memory(memory_bytes: int | None) -> int | None:
    """Cap the child's address space at what it has now (interpreter, imports, thread stacks:
    large and machine-dependent, so measured rather than assumed) plus ``memory_bytes``; the
    budget in MB, or None when there is no cap. A decoder that wants more gets a MemoryError
    (that image's ``image_too_large``) or dies (retried, then ``undecodable_image``), never the
    kernel's OOM killer picking the service: the media limits bound what a valid image needs,
    and this bounds what a codec bug on a crafted one can take."""
    if not memory_bytes:
        return None
    try:
        with open("/proc/self/status") as f:
            size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):  # no /proc: no cap rather than a wrong one
        return None
    cap = size_kb * 1024 + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return memory_bytes >> 20


def _header(frames: FrameSet) -> dict[str, Any]:
    return {
        "shape": list(frames.pixels.shape),
        "indices": list(frames.indices),
        "timestamps_ms": list(frames.timestamps_ms),
        "total": frames.total,
        "distinct": frames.distinct,
        "overflow": frames.overflow,
        "animated": frames.animated,
        "uncovered": frames.uncovered,
        "hashes": [_hash_header(h) for h in frames.hashes],
    }


def _hash_header(h: Any) -> list:
    """A frame hash as the pipe carries it: bits, quality, turns, and the trimmed hash (or None)."""
    trimmed = getattr(h, "trimmed", None)
    return [h.bits.hex(), h.quality, [t.hex() for t in getattr(h, "turns", ())], None if trimmed is None else _hash_header(trimmed)]


class _Child:
    def __init__(self, context, decode: Callable[[bytes], FrameSet], memory_bytes: int | None) -> None:
        self.conn, theirs = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(theirs, decode, memory_bytes), name="moderator-decode", daemon=True)
        self.process.start()
        theirs.close()

    def stop(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class ChildCrashed(Exception):
    pass


class ChildHung(Exception):
    pass


class DecodeProcesses:
    """Decodes with ``decode`` (picklable: a module-level function or a ``functools.partial`` of
    one) in ``processes`` children, one image per child at a time. Thread-safe: callers wait for a
    free child, so with as many calling threads as children none waits."""

    def __init__(
        self,
        processes: int,
        decode: Callable[[bytes], FrameSet],
        hard_timeout_s: float,
        max_frames: int,
        image_size: int,
        on_restart: Callable[[str], None] | None = None,
        make_hash: Callable[[bytes, int, tuple[bytes, ...], Any], Any] | None = None,
        memory_bytes: int | None = None,
        squares_per_frame: int = 1,
    ) -> None:
        """``max_frames``, ``squares_per_frame`` (``media.max_crops`` with ``crops: cover``) and
        ``image_size`` bound what a child may send back (at most ``2 * max_frames *
        squares_per_frame`` squares of ``image_size`` squared pixels), so that a child taken over
        through a codec cannot make the service allocate more. ``make_hash(bits, quality, turns,
        trimmed)``: a frame hash as the decode function's hasher made it (its ``bits``,
        ``quality``, ``turns`` and ``trimmed`` hash, made the same way, cross the pipe); None when
        the decode function hashes nothing. ``memory_bytes``: how much a child may allocate
        beyond what it holds once started (None: no cap)."""
        self.processes = processes
        self.memory_bytes = memory_bytes
        self._make_hash = make_hash
        self.hard_timeout_s = hard_timeout_s
        self.max_frames = max_frames
        self.max_rows = 2 * max_frames * squares_per_frame
        self.image_size = image_size
        self._decode = decode
        self._on_restart = on_restart or (lambda _why: None)
        self._context = multiprocessing.get_context("spawn")
        self._free: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> list[int]:
        """Start the children (they import the decoders before answering); their pids.

        Raises:
            StartupError: a child died or did not answer (its exit code and the log say why).
        """
        children = [self._spawn() for _ in range(self.processes)]
        for child in children:
            try:
                self._exchange(child, b"")  # an empty image: an error answer, once the child is up
            except MessageError:
                pass
            except (ChildCrashed, ChildHung):
                self.close()
                raise StartupError(
                    f"a decode process did not start (exit code {child.process.exitcode}; its traceback, if any, is in the log above);"
                    " media.decode_mode: threads decodes without them"
                ) from None
            self._free.put(child)
        return [c.process.pid or 0 for c in children]

    def pids(self) -> list[int]:
        """The children's process ids now (a replaced child has a new one)."""
        with self._lock:
            return [c.process.pid or 0 for c in self._children]

    def _spawn(self) -> _Child:
        child = _Child(self._context, self._decode, self.memory_bytes)
        with self._lock:
            self._children.append(child)
        return child

    def _replace(self, child: _Child, why: str) -> _Child:
        child.stop()
        if self._closed:
            raise RuntimeError("decode processes closed")
        with self._lock:
            if child in self._children:
                self._children.remove(child)
        self._on_restart(why)
        return self._spawn()

    def __call__(self, data: bytes) -> FrameSet:
        """The decoded frames of one image.

        Raises:
            MessageError: as the decode function (raised in the child, re-raised here), or
                UndecodableImage when the image crashed two children in a row, ImageTooLarge
                when it hung one.
        """
        while True:
            if self._closed:
                raise RuntimeError("decode processes closed")
            try:
                child = self._free.get(timeout=1.0)
                break
            except queue.Empty:
                continue
        try:
            for attempt in (1, 2):
                try:
                    return self._exchange(child, data)
                except ChildCrashed:
                    child = self._replace(child, "crashed")
                    log.warning("a decode process died on an image (attempt %d of 2)", attempt)
                except ChildHung:
                    child = self._replace(child, "timeout")
                    log.warning("a decode process was stopped after %gs on one image", self.hard_timeout_s)
                    raise ImageTooLarge(f"decoding did not finish in {self.hard_timeout_s:g}s (media.max_decode_seconds); the decoder was stopped") from None
            raise UndecodableImage("the decoder crashed on this image twice (its process died; a fresh one died too)")
        finally:
            self._free.put(child)

    def _exchange(self, child: _Child, data: bytes) -> FrameSet:
        try:
            child.conn.send_bytes(data)
            if not child.conn.poll(self.hard_timeout_s):
                raise ChildHung
            header = json.loads(child.conn.recv_bytes(MAX_HEADER_BYTES))
            if "error" in header:
                raise _ERRORS.get(header["error"], UndecodableImage)(str(header.get("message", ""))[:MAX_MESSAGE_CHARS])
            return self._frames(child, header)
        except MessageError:
            raise
        except (EOFError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:  # died, or sent what a decoder never sends
            raise ChildCrashed from exc

    def _frames(self, child: _Child, header: dict[str, Any]) -> FrameSet:
        shape = tuple(int(v) for v in header["shape"])
        if len(shape) != 4 or not 1 <= shape[0] <= self.max_rows or shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"decode process sent pixels of shape {shape}")
        size = int(np.prod(shape))
        if not child.conn.poll(self.hard_timeout_s):
            raise ValueError("decode process sent a header without pixels")
        raw = child.conn.recv_bytes(size)
        if len(raw) != size:
            raise ValueError("decode process sent pixels of the wrong length")
        hashes = tuple(self._hash(entry) for entry in header["hashes"])
        count = shape[0]
        indices, stamps = tuple(int(i) for i in header["indices"]), tuple(int(t) for t in header["timestamps_ms"])
        if len(indices) != count or len(stamps) != count or len(hashes) not in (0, count):
            raise ValueError("decode process sent a header that does not match its pixels")
        return FrameSet(
            pixels=np.frombuffer(raw, np.uint8).reshape(shape),
            indices=indices,
            timestamps_ms=stamps,
            total=int(header["total"]),
            distinct=int(header["distinct"]),
            overflow=bool(header["overflow"]),
            animated=bool(header["animated"]),
            hashes=hashes,
            uncovered=bool(header.get("uncovered", False)),
        )

    def _hash(self, entry: list, nested: bool = False) -> Any:
        if self._make_hash is None:
            raise ValueError("decode process sent hashes, and none were asked for")
        hex_bits, quality, turn_hex, trimmed = entry
        bits, turns = bytes.fromhex(hex_bits), tuple(bytes.fromhex(t) for t in turn_hex)
        if len(turns) > 8 or any(len(t) != len(bits) for t in turns) or (nested and trimmed is not None):
            raise ValueError("decode process sent a hash whose turns or trimmed hash do not match it")
        return self._make_hash(bits, int(quality), turns, None if trimmed is None else self._hash(trimmed, nested=True))

    def close(self) -> None:
        self._closed = True
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            child.stop()
