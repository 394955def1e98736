"""Triton Inference Server backend, through tritonclient (gRPC by default, HTTP as an option).

The server holds a repository from ``moderator models triton-repo``: images go as uint8
``[N,S,S,3]`` (normalised inside the graph), texts are tokenised here with the model
directory's ``tokenizer.json`` and sent as ``input_ids``. The model directory is needed for its
manifest and tokenizer only; the client checks at start that the server serves the same model
(its checksum parameter) with the shapes the manifest promises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from moderator.encoders.base import EncoderInfo
from moderator.errors import BackendError, ModelError
from moderator.models.manifest import IMAGE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, load_manifest
from moderator.models.tokenizer import TextTokenizer
from moderator.models.triton_contract import CHECKSUM_PARAMETER, PIXELS_INPUT, PRECISION_PARAMETER
from moderator.retry import Backoff, RetryStopped, retry
from moderator.settings import EncoderSettings

log = logging.getLogger(__name__)

READY_CACHE_S = 2.0


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise ModelError("the triton backend needs tritonclient: pip install 'moderator[triton]'") from exc
    return module


class TritonEncoder:
    """Client of the two Triton models; calls are serialised (the HTTP client is not thread-safe)."""

    backend = "triton"

    def __init__(self, settings: EncoderSettings) -> None:
        ts = self.ts = settings.triton
        self._requested = settings.precision  # what the server must serve (checked in connect)
        self._backoff = Backoff.from_ms(settings.retry_initial_ms, settings.retry_max_ms)
        self._module = _client_module(ts.protocol)
        self.manifest = load_manifest(settings.model_dir, verify=False, graphs=False)
        self._tokenizer = TextTokenizer(settings.model_dir / self.manifest.tokenizer.path, self.manifest.context_length, self.manifest.pad_token_id)
        self._size = self.manifest.preprocess.image_size
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ready_at, self._ready = 0.0, False
        if ts.protocol == "grpc":
            self._client = self._module.InferenceServerClient(ts.url, ssl=ts.ssl)
        else:
            self._client = self._module.InferenceServerClient(ts.url, ssl=ts.ssl, connection_timeout=ts.timeout_s, network_timeout=ts.timeout_s)
        self._checked = False

    def connect(self) -> None:
        """Check, once, that the server serves the manifest's models (the only network step).

        Raises:
            BackendError: the server is unreachable now.
            ModelError: it serves other models.
        """
        if not self._checked:
            self._check_server()
            self._checked = True

    # --- identity -----------------------------------------------------------------------------

    def _model_config(self, name: str) -> dict[str, Any]:
        if self.ts.protocol == "grpc":
            return self._client.get_model_config(name, self.ts.model_version, as_json=True)["config"]
        return self._client.get_model_config(name, self.ts.model_version)

    def _check_server(self) -> None:
        """The served models match the manifest (shapes, and the checksum when configured).

        Raises:
            BackendError: Triton is unreachable or the models are not loaded (retried at start).
            ModelError: Triton serves a different model.
        """
        m = self.manifest
        expected = {
            self.ts.image_model: ((PIXELS_INPUT, [self._size, self._size, 3]), (IMAGE_OUTPUT, [m.embed_dim])),
            self.ts.text_model: ((TEXT_INPUT, [m.context_length]), (TEXT_OUTPUT, [m.embed_dim])),
        }
        self.max_batch_size = self.ts.request_batch_size
        self.precision = "unknown"
        for name, ((in_name, in_dims), (out_name, out_dims)) in expected.items():
            config = self._guard(lambda n=name: self._model_config(n), f"reading the config of {name}")
            inputs = {t["name"]: [int(d) for d in t.get("dims", [])] for t in config.get("input", [])}
            outputs = {t["name"]: [int(d) for d in t.get("dims", [])] for t in config.get("output", [])}
            if inputs.get(in_name) != in_dims or outputs.get(out_name) != out_dims:
                raise ModelError(
                    f"Triton model {name!r} has inputs {inputs} and outputs {outputs}; the manifest of "
                    f"{m.name} needs {in_name}{in_dims} -> {out_name}{out_dims} (regenerate it with "
                    "`moderator models triton-repo`)"
                )
            parameters = config.get("parameters", {})
            served = parameters.get(CHECKSUM_PARAMETER, {}).get("string_value")
            if served is None:
                log.warning("Triton model %s carries no %s parameter: cannot verify it is %s", name, CHECKSUM_PARAMETER, m.checksum())
            elif served != m.checksum():
                raise ModelError(f"Triton model {name!r} is model checksum {served}, the model directory is {m.checksum()}")
            self.max_batch_size = min(self.max_batch_size, int(config.get("max_batch_size") or self.ts.request_batch_size))
            if name == self.ts.image_model:
                self.precision = parameters.get(PRECISION_PARAMETER, {}).get("string_value", "unknown")
        if self.precision == "unknown":
            log.warning("Triton model %s carries no %s parameter: cannot verify it serves %s", self.ts.image_model, PRECISION_PARAMETER, self._requested)
        elif self.precision != self._requested and not (self.precision == "tensorrt" and self._requested == "fp16"):  # engines are fp16 builds
            raise ModelError(
                f"Triton serves the {self.precision} variant of {m.name} and encoder.precision asks for {self._requested}: ask for "
                f"{self.precision}, or write the repository again with `moderator models triton-repo --precision {self._requested}`"
            )

    # --- Encoder ------------------------------------------------------------------------------

    def info(self) -> EncoderInfo:
        m = self.manifest
        return EncoderInfo(
            backend=self.backend,
            model_name=m.name,
            model_checksum=m.checksum(),
            architecture=m.architecture,
            precision=self.precision,
            embed_dim=m.embed_dim,
            preprocess=m.preprocess,
            logit_scale=m.logit_scale,
            logit_bias=m.logit_bias,
            providers=(f"triton-{self.ts.protocol}:{self.ts.url}",),
        )

    def ready(self) -> bool:
        if self._closed.is_set():
            return False
        now = time.monotonic()
        if now - self._ready_at > READY_CACHE_S:
            try:
                with self._lock:
                    self._ready = all(self._client.is_model_ready(n, self.ts.model_version) for n in (self.ts.image_model, self.ts.text_model))
            except Exception:  # unreachable server: not ready
                self._ready = False
            self._ready_at = now
        return self._ready

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (self._size, self._size, 3):
            raise ValueError(f"expected uint8 [N,{self._size},{self._size},3], got {pixels.dtype} {pixels.shape}")
        return self._infer_chunked(self.ts.image_model, PIXELS_INPUT, "UINT8", np.ascontiguousarray(pixels), IMAGE_OUTPUT)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        ids = self._tokenizer(texts) if len(texts) else np.zeros((0, self.manifest.context_length), np.int64)
        return self._infer_chunked(self.ts.text_model, TEXT_INPUT, "INT64", ids, TEXT_OUTPUT)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            try:
                self._client.close()
            except Exception as exc:  # closing is best effort
                log.debug("triton client close failed: %s", exc)

    # --- calls --------------------------------------------------------------------------------

    def _infer_chunked(self, model: str, input_name: str, dtype: str, data: np.ndarray, output: str) -> np.ndarray:
        if len(data) == 0:
            return np.zeros((0, self.manifest.embed_dim), np.float32)
        step = self.max_batch_size
        parts = [self._infer(model, input_name, dtype, data[i : i + step], output) for i in range(0, len(data), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _infer(self, model: str, input_name: str, dtype: str, data: np.ndarray, output: str) -> np.ndarray:
        inp = self._module.InferInput(input_name, list(data.shape), dtype)
        inp.set_data_from_numpy(data)
        outputs = [self._module.InferRequestedOutput(output)]
        if self.ts.protocol == "grpc":
            call = lambda: self._client.infer(model, [inp], model_version=self.ts.model_version, outputs=outputs, client_timeout=self.ts.timeout_s)  # noqa: E731
        else:
            call = lambda: self._client.infer(model, [inp], model_version=self.ts.model_version, outputs=outputs)  # noqa: E731
        result = self._guard(call, f"inference on {model}")
        return result.as_numpy(output)

    def _guard(self, call, what: str):
        """Run a client call under the lock, retrying ``ts.retries`` times with backoff
        (``encoder.retry_*``); the worker's own retry takes over after that.

        Raises:
            BackendError: every attempt failed.
        """
        if self._closed.is_set():
            raise BackendError("encoder is closed")

        def locked():
            with self._lock:
                return call()

        try:  # InferenceServerException, plus grpc/gevent transport errors: Exception
            return retry(locked, on=Exception, backoff=self._backoff, attempts=self.ts.retries + 1)
        except RetryStopped as exc:
            raise BackendError(f"Triton {what} at {self.ts.url} failed after {exc.attempts} attempt(s): {exc.last}") from exc.last
