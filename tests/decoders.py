"""Decode functions for tests of decode processes (``moderator.media.processes``): importable by
name, as a child process must import them. Each decodes like the service unless the image bytes
start with a marker that makes it crash, hang or lie, as a codec on hostile bytes might."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import numpy as np

from moderator.hashing.compute import pdq_of
from moderator.media.decode import DecodeLimits
from moderator.media.frames import FrameLimits, FrameSet
from moderator.media.preprocess import Preprocessor
from moderator.models.manifest import Preprocess
from moderator.processing import decode_any

SEGV = b"SEGV"  # the process dies of a segmentation fault
HANG = b"HANG"  # the process never answers
ONCE = b"ONCE:"  # dies the first time (a marker file named after the prefix records it), then decodes
LIE = b"LIES"  # answers with hashes that do not match its frames
GREEDY = b"GRDY"  # allocates 4 GiB, as a codec bug on a crafted file might
HUGE = b"HUGE"  # answers with 4096 x 4096 frames where the service expects 32 x 32: 48 MB it never asked for

PREPROCESS = Preprocess(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", resize_mode="shortest", fill_color=0)


def real(data: bytes) -> FrameSet:
    return decode_any(data, DecodeLimits(), FrameLimits(), Preprocessor(PREPROCESS, crops="cover"), pdq_of)


def hostile(data: bytes) -> FrameSet:
    if data.startswith(SEGV):
        os.kill(os.getpid(), signal.SIGSEGV)
    if data.startswith(HANG):
        time.sleep(3600)
    if data.startswith(ONCE):
        marker, _, data = data[len(ONCE) :].partition(b"|")
        path = Path(marker.decode())
        if not path.exists():
            path.write_text("crashed once")
            os.kill(os.getpid(), signal.SIGSEGV)
    if data.startswith(GREEDY):
        np.ones(4 << 30, np.uint8)
    if data.startswith(HUGE):
        frames = real(data[len(HUGE) :])
        return dataclasses.replace(frames, pixels=np.zeros((len(frames.pixels), 4096, 4096, 3), np.uint8))
    if data.startswith(LIE):
        frames = real(data[len(LIE) :])
        return dataclasses.replace(frames, hashes=frames.hashes * 2)
    return real(data)


def dies(data: bytes) -> FrameSet:
    """A decoder whose process exits on its first image (a broken install, say)."""
    os._exit(3)
