"""Ray Serve backend: encode through the ``Encoder`` deployment's handle.

Batches go as whole uint8 ``[N,S,S,3]`` arrays (a quarter of float32's bytes); replicas merge
them with ``@serve.batch``. The client joins the Ray cluster named by ``encoder.ray.address``
(or starts a local one), deploys the encoder application from the same settings when it is not
running (``encoder.ray.deploy``), and turns every Ray failure into :class:`BackendError`, which
the worker retries with backoff while consumption pauses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from moderator.encoders.base import EncoderInfo
from moderator.errors import BackendError, ModelError
from moderator.settings import EncoderSettings

log = logging.getLogger(__name__)

READY_CACHE_S = 2.0


def _ray():
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ModelError("the ray backend needs Ray Serve: pip install 'moderator[ray]'") from exc
    return ray, serve


def join_cluster(settings: EncoderSettings) -> None:
    """Join the configured Ray cluster (or start a local one) once per process."""
    ray, _ = _ray()
    if ray.is_initialized():
        return
    address = settings.ray.address or None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ...: Ray does not have one type
        raise BackendError(f"cannot join the Ray cluster at {address or '(local)'}: {exc}") from exc


class RayEncoder:
    """Client of the ``Encoder`` deployment; safe to call from several threads."""

    backend = "ray"

    def __init__(self, settings: EncoderSettings, *, handle: Any = None) -> None:
        """No network call here (:meth:`connect` makes them); ``handle``: an existing deployment
        handle (the pipeline on Ray passes its own)."""
        self.settings = settings
        self._timeout = settings.ray.request_timeout_s
        self._handle = handle
        self._closed = threading.Event()
        self._ready_at = 0.0
        self._ready = False
        self._info: EncoderInfo | None = None
        self.max_batch_size = settings.ray.replica_batch_size
        self._size = 0

    def connect(self) -> None:
        """Join the cluster, find (or deploy) the encoder deployment, and ask it what it serves.

        Raises:
            BackendError: Ray or the deployment cannot be reached now.
        """
        if self._info is not None:
            return
        if self._handle is None:
            join_cluster(self.settings)
            self._handle = self._find_or_deploy()
        info, self.max_batch_size = self._call(self._handle.describe.remote())
        self._size = info.preprocess.image_size
        self._info = replace(info, backend=self.backend)

    def _find_or_deploy(self):
        _, serve = _ray()
        rs = self.settings.ray
        try:
            return serve.get_deployment_handle(rs.deployment, rs.app_name)
        except Exception as exc:  # missing app or Serve not started: Ray raises several types
            if not rs.deploy:
                raise BackendError(
                    f"no Serve deployment {rs.deployment!r} in application {rs.app_name!r} (deploy it, or set MODERATOR_ENCODER__RAY__DEPLOY=true): {exc}"
                ) from exc
        from moderator.encoders.ray_server import deploy_encoder

        log.info("deploying Serve application %s (%d replica(s))", rs.app_name, rs.num_replicas)
        deploy_encoder(self.settings)
        return serve.get_deployment_handle(rs.deployment, rs.app_name)

    def _call(self, response):
        try:
            return response.result(timeout_s=self._timeout)
        except Exception as exc:  # replica died, timed out, deployment gone: all retryable
            raise BackendError(f"Ray Serve call failed: {type(exc).__name__}: {exc}") from exc

    def info(self) -> EncoderInfo:
        if self._info is None:
            raise BackendError("the Ray encoder is not connected yet (connect() first)")
        return self._info

    def ready(self) -> bool:
        """A cheap call through the handle, cached for two seconds (readiness is polled)."""
        if self._closed.is_set() or self._info is None:
            return False
        now = time.monotonic()
        if now - self._ready_at > READY_CACHE_S:
            try:
                self._handle.describe.remote().result(timeout_s=min(self._timeout, 5.0))
                self._ready = True
            except Exception:  # any failure means not ready
                self._ready = False
            self._ready_at = now
        return self._ready

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (self._size, self._size, 3):
            raise ValueError(f"expected uint8 [N,{self._size},{self._size},3], got {pixels.dtype} {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros((0, self.info().embed_dim), np.float32)
        self._check_open()
        # One call per replica-sized chunk, all in flight at once.
        step = self.max_batch_size
        responses = [self._handle.encode_images.remote(pixels[i : i + step]) for i in range(0, len(pixels), step)]
        return np.concatenate([self._call(r) for r in responses])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.info().embed_dim), np.float32)
        self._check_open()
        return self._call(self._handle.encode_texts.remote(list(texts)))

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise BackendError("encoder is closed")

    def close(self) -> None:
        """Stop using the handle; the deployment keeps running for other consumers."""
        self._closed.set()
