"""Ray Serve deployments: the encoder, and the whole pipeline (consumers as a deployment too).

Two applications, both built from one :class:`~moderator.settings.Settings`:

- ``encoder_app(settings)``: the ``Encoder`` deployment. Each replica holds the onnxruntime
  encoder; ``@serve.batch`` merges the consumers' batches (uint8 ``[N,S,S,3]``, whole batches per
  call) into encoder calls of up to ``encoder.ray.max_batch_size`` images.
- ``pipeline(args)``: the encoder plus a ``Moderator`` deployment whose replicas are Kafka
  consumer-group members, each running the stream worker against the encoder's handle. Scale
  consumers with partitions (replicas <= partitions) and encoders with load (autoscaling).

``serve run deploy/ray/serve-config.yaml`` and KubeRay's RayService use ``pipeline`` through
``import_path: moderator.serving.ray_app:pipeline``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np

from moderator.encoders.base import EncoderInfo
from moderator.errors import ModelError
from moderator.settings import EncoderSettings, Settings, load_settings

try:
    from ray import serve
except ImportError as exc:  # the optional extra
    raise ModelError("the ray backend needs Ray Serve: pip install 'moderator[ray]'") from exc

log = logging.getLogger(__name__)


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
        self.encode_batch.set_max_batch_size(self.settings.ray.max_batch_size)
        self.encode_batch.set_batch_wait_timeout_s(self.settings.ray.batch_wait_timeout_s)

    def describe(self) -> tuple[EncoderInfo, int]:
        """The encoder's identity and the largest request a replica accepts (images)."""
        return self.encoder.info(), self.settings.ray.max_batch_size

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
    return EncoderServer.options(**options)


def _portable(settings: EncoderSettings) -> dict[str, Any]:
    """Encoder settings for a replica: the model directory as an absolute path (replicas do not
    share the caller's working directory), and the replica always runs onnxruntime."""
    data = settings.model_dump(mode="json")
    data["model_dir"] = str(settings.model_dir.resolve())
    data["backend"] = "onnx"
    return data


def _portable_settings(settings: Settings) -> dict[str, Any]:
    """Service settings for a consumer replica, every relative path made absolute."""
    data = settings.model_dump(mode="json")
    data["encoder"] = _portable(settings.encoder) | {"backend": "ray"}
    for key in ("path", "shadow_path", "cache_dir"):
        value = getattr(settings.policy, key)
        if value is not None:
            data["policy"][key] = str(value.resolve())
    return data


def encoder_app(settings: EncoderSettings):
    return encoder_deployment(settings).bind(_portable(settings))


def deploy_encoder(settings: EncoderSettings) -> None:
    """Deploy (or update) the encoder application on the connected Ray cluster, without an HTTP
    proxy: consumers call it through deployment handles."""
    serve.start(proxy_location="Disabled")
    serve.run(encoder_app(settings), name=settings.ray.app_name, route_prefix=None, blocking=False)


@serve.deployment(name="Moderator")
class ModeratorServer:
    """One replica: a Kafka consumer-group member running the stream worker in a thread, scoring
    through the encoder deployment's handle. Serve restarts a replica whose worker died."""

    def __init__(self, settings: dict[str, Any], encoder_handle: Any) -> None:
        from moderator.app import Application
        from moderator.encoders.rayserve import RayEncoder

        self.settings = Settings.model_validate(settings)  # already validated by the builder
        # Serve owns the replica's log handlers (its replica log files); only set our level.
        logging.getLogger("moderator").setLevel(self.settings.telemetry.log_level)
        # The encoder client is made on the worker thread: handle calls block, and this
        # constructor runs on the replica's event loop.
        self.app = Application(self.settings, make_encoder=lambda: RayEncoder(self.settings.encoder, handle=encoder_handle))
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="moderator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.app.run()
        except Exception as exc:  # reported by check_health; Serve replaces the replica
            log.exception("moderator stopped: %s", exc)
            self.exit_code = 1

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"the stream worker exited with code {self.exit_code}")

    def __del__(self) -> None:
        # Serve's graceful shutdown: drain, commit, leave the group (bounded by shutdown_timeout_s).
        if not hasattr(self, "_thread"):
            return  # the constructor failed
        self.app.stop()
        self._thread.join(self.settings.shutdown_timeout_s)


def pipeline(args: dict[str, Any]):
    """Application builder for ``serve run``/RayService: ``args`` are ``config`` (a settings YAML
    file, optional), ``settings`` (overrides, nested like the YAML) and ``consumers`` (replicas of
    the consumer deployment, at most the number of input partitions)."""
    overrides = dict(args.get("settings") or {})
    encoder = dict(overrides.get("encoder") or {})
    encoder["backend"] = "ray"
    overrides["encoder"] = encoder
    settings = load_settings(args.get("config"), **overrides)
    consumers = int(args.get("consumers", 1))
    if consumers < 1:
        raise ValueError("consumers must be at least 1")
    worker = ModeratorServer.options(
        name="Moderator",
        num_replicas=consumers,
        # Each replica serves /metrics on settings.telemetry.port: one per node keeps ports apart.
        max_replicas_per_node=1,
        ray_actor_options={"num_cpus": float(args.get("consumer_cpus", 1))},
        graceful_shutdown_timeout_s=settings.shutdown_timeout_s + 5,
        health_check_period_s=5,
    )
    return worker.bind(_portable_settings(settings), encoder_app(settings.encoder))
