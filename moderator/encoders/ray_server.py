"""The Ray backend's server half: the ``Encoder`` Serve deployment.

Each replica holds the in-process onnxruntime encoder; ``@serve.batch`` merges the consumers'
batches (uint8 ``[N,S,S,3]``, whole batches per call) into encoder calls of up to
``encoder.ray.replica_batch_size`` images. The client (``encoders.rayserve``) deploys it from the
same settings when ``encoder.ray.deploy`` is set; ``serving.ray_app`` binds it into the whole
pipeline for ``serve run`` and KubeRay.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from moderator.encoders.base import EncoderInfo
from moderator.errors import ModelError
from moderator.settings import EncoderSettings

try:
    from ray import serve
except ImportError as exc:  # the optional extra
    raise ModelError("the ray backend needs Ray Serve: pip install 'moderator[ray]'") from exc


def _images_in(batches: list[np.ndarray]) -> int:
    """@serve.batch's batch size: images, not requests (each request is a whole batch)."""
    return sum(len(b) for b in batches)


@serve.deployment(name="Encoder")
class EncoderServer:
    """One replica: the in-process onnx encoder behind Serve's dynamic batching."""

    def __init__(self, encoder_settings: dict[str, Any]) -> None:
        from moderator.encoders.onnx import OnnxEncoder

        self.settings = EncoderSettings.model_validate(encoder_settings)
        self.encoder = OnnxEncoder.from_settings(self.settings)
        # @serve.batch adds these setters at run time; its stub types the method as a plain coroutine.
        self.encode_batch.set_max_batch_size(self.settings.ray.replica_batch_size)  # type: ignore[attr-defined]
        self.encode_batch.set_batch_wait_timeout_s(self.settings.ray.batch_wait_timeout_s)  # type: ignore[attr-defined]

    def describe(self) -> tuple[EncoderInfo, int]:
        """The encoder's identity and the largest request a replica accepts (images)."""
        return self.encoder.info(), self.settings.ray.replica_batch_size

    async def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        return await self.encode_batch(pixels)

    async def encode_texts(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.encoder.encode_texts, texts)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=_images_in)
    async def encode_batch(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(b) for b in batches]
        merged = batches[0] if len(batches) == 1 else np.concatenate(batches)
        # In a thread, so requests keep queueing (and the next batch fills) while this one runs.
        out = await asyncio.to_thread(self.encoder.encode_images, merged)
        return np.split(out, np.cumsum(sizes)[:-1])

    def check_health(self) -> None:
        if not self.encoder.ready():
            raise RuntimeError("encoder closed")


def encoder_deployment(settings: EncoderSettings):
    """The encoder deployment, sized from ``settings.ray`` (replicas, autoscaling, resources)."""
    rs = settings.ray
    options: dict[str, Any] = {
        "name": rs.deployment,
        "max_ongoing_requests": rs.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": rs.num_cpus, "num_gpus": rs.num_gpus},
        "health_check_period_s": 5,
    }
    if rs.max_replicas is not None and rs.max_replicas > rs.num_replicas:
        options["autoscaling_config"] = {
            "min_replicas": rs.num_replicas,
            "initial_replicas": rs.num_replicas,
            "max_replicas": rs.max_replicas,
            "target_ongoing_requests": rs.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = rs.num_replicas
    return EncoderServer.options(**options)  # type: ignore[attr-defined]  # @serve.deployment makes the class a Deployment


def portable_encoder_settings(settings: EncoderSettings) -> dict[str, Any]:
    """Encoder settings for a replica: the model directory as an absolute path (replicas do not
    share the caller's working directory), and the replica always runs onnxruntime."""
    data = settings.model_dump(mode="json")
    data["model_dir"] = str(settings.model_dir.resolve())
    data["backend"] = "onnx"
    return data


def encoder_app(settings: EncoderSettings):
    return encoder_deployment(settings).bind(portable_encoder_settings(settings))


def deploy_encoder(settings: EncoderSettings) -> None:
    """Deploy (or update) the encoder application on the connected Ray cluster, without an HTTP
    proxy: consumers call it through deployment handles."""
    serve.start(proxy_location="Disabled")
    serve.run(encoder_app(settings), name=settings.ray.app_name, route_prefix=None, blocking=False)
