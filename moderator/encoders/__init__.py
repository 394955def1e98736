"""Encoder backends behind one interface (:class:`~moderator.encoders.base.Encoder`).

Backends: ``onnx`` (in-process onnxruntime), ``ray`` (a Ray Serve deployment), ``triton`` (a
Triton Inference Server). One way to make any of them: ``build_encoder(settings)`` constructs the
backend named in settings without a network call; ``encoder.connect()`` is the one step that
makes them (the service retries it with backoff); ``create_encoder`` does both. Each backend
imports its heavy dependencies itself, so installing one does not require the others.
"""

from __future__ import annotations

from moderator.encoders.base import Encoder, EncoderInfo
from moderator.settings import EncoderSettings


def create_encoder(settings: EncoderSettings) -> Encoder:
    """Build the configured encoder and connect it (for tools that need one now).

    Raises:
        ModelError: the model directory is unusable, or a remote backend serves another model.
        BackendError: a remote backend (Ray, Triton) is unreachable now; worth retrying.
    """
    encoder = build_encoder(settings)
    encoder.connect()
    return encoder


def build_encoder(settings: EncoderSettings) -> Encoder:
    """Construct the configured encoder: loads the model or reads the manifest, no network call.

    Raises:
        ModelError: the model directory is unusable, or the backend's extra is not installed.
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


__all__ = ["Encoder", "EncoderInfo", "build_encoder", "create_encoder"]
