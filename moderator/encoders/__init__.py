"""Encoder backends behind one interface (:class:`~moderator.encoders.base.Encoder`).

Backends: ``onnx`` (in-process onnxruntime), ``ray`` (a Ray Serve deployment), ``triton`` (a
Triton Inference Server). ``create_encoder(settings)`` picks the backend named in settings; each backend imports its heavy
dependencies itself, so installing one does not require the others.
"""

from __future__ import annotations

from moderator.encoders.base import Encoder, EncoderInfo
from moderator.settings import EncoderSettings


def create_encoder(settings: EncoderSettings) -> Encoder:
    """Build the configured encoder (loads the model; no network calls).

    Raises:
        ModelError: the model directory is unusable, or a remote backend serves another model.
        BackendError: a remote backend (Ray, Triton) is unreachable now; worth retrying.
    """
    if settings.backend == "onnx":
        from moderator.encoders.onnx import OnnxEncoder

        return OnnxEncoder.from_settings(settings)
    if settings.backend == "ray":
        from moderator.encoders.rayserve import RayEncoder

        return RayEncoder(settings)
    if settings.backend == "triton":
        from moderator.encoders.triton import TritonEncoder

        return TritonEncoder(settings)
    raise AssertionError(f"unhandled backend {settings.backend!r}")  # Settings' Literal makes this unreachable


__all__ = ["Encoder", "EncoderInfo", "create_encoder"]
