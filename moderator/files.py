"""Reading files that people edit (policies, hash banks) without trusting them: only regular
files, opened without blocking (a FIFO or a device would block or never end), of bounded size."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileRefused(Exception):
    """The file cannot be read as asked; the message says why, in words."""


def read_regular_file(path: Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, never blocking.

    Raises:
        FileRefused: not readable, not a regular file, or too large (also when it grew while read).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(f"cannot read {what}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"not a regular file (a directory, device, FIFO or socket cannot be a {what})")
        if info.st_size > max_bytes:
            raise FileRefused(f"{what} is {info.st_size} bytes, over the {max_bytes}-byte limit")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(max_bytes + 1 - size, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileRefused(f"cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if size > max_bytes:
        raise FileRefused(f"{what} is over the {max_bytes}-byte limit")
    return b"".join(chunks)
