"""The whole pipeline on Ray Serve: consumers as a deployment beside the encoder deployment.

``pipeline(args)`` builds, from one :class:`~moderator.settings.Settings`, the ``Encoder``
deployment (the Ray backend's server half, ``encoders.ray_server``) and a ``Moderator``
deployment whose replicas are Kafka consumer-group members, each running the stream worker
against the encoder's handle. Scale consumers with partitions (replicas <= partitions) and
encoders with load (autoscaling). This module hosts the pipeline, so it sits above
``moderator.app``; the encoder deployment sits below it, with the other backends.

``serve run deploy/ray/serve-config.yaml`` and KubeRay's RayService use ``pipeline`` through
``import_path: moderator.serving.ray_app:pipeline``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ray import serve  # after encoders.ray_server, which says how to install Ray when it is missing

from moderator.app import Application
from moderator.encoders.ray_server import encoder_app, portable_encoder_settings
from moderator.encoders.rayserve import RayEncoder
from moderator.settings import Settings, load_settings

log = logging.getLogger(__name__)


SECRETS = ("ssl_password", "sasl_plain_password")


def _portable_settings(settings: Settings) -> dict[str, Any]:
    """Service settings for a consumer replica, every relative path made absolute, and no secret:
    a replica reads them itself, from their ``*_file`` settings (files on every node) or from its
    environment (the application's ``runtime_env``)."""
    data = settings.model_dump(mode="json")
    for key in SECRETS:
        if data["kafka"].pop(key, None) is not None and getattr(settings.kafka, f"{key}_file") is None:
            log.warning(
                "kafka.%s is not shipped to the consumer replicas: give it to them as kafka.%s_file or as MODERATOR_KAFKA__%s in the application's runtime_env",
                key,
                key,
                key.upper(),
            )
    data["encoder"] = portable_encoder_settings(settings.encoder) | {"backend": "ray"}
    for key in ("path", "shadow_path", "cache_dir"):
        value = getattr(settings.policy, key)
        if value is not None:
            data["policy"][key] = str(value.resolve())
    return data


@serve.deployment(name="Moderator")
class ModeratorServer:
    """One replica: a Kafka consumer-group member running the stream worker in a thread, scoring
    through the encoder deployment's handle. Serve restarts a replica whose worker died."""

    def __init__(self, settings: dict[str, Any], encoder_handle: Any) -> None:
        # Validated by the builder; secrets come from this replica's own files and environment.
        self.settings = load_settings(None, **settings)
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
    worker = ModeratorServer.options(  # type: ignore[attr-defined]  # @serve.deployment made it a Deployment
        name="Moderator",
        num_replicas=consumers,
        # Each replica serves /metrics on settings.telemetry.port: one per node keeps ports apart.
        max_replicas_per_node=1,
        ray_actor_options={"num_cpus": float(args.get("consumer_cpus", 1))},
        graceful_shutdown_timeout_s=settings.shutdown_timeout_s + 5,
        health_check_period_s=5,
    )
    return worker.bind(_portable_settings(settings), encoder_app(settings.encoder))
