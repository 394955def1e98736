"""In-process onnxruntime encoder over a model directory.

Execution providers: the configured list, or the best available of TensorRT, CUDA and CPU. A
provider that is installed but cannot start (no GPU, no driver) is dropped with a logged reason
instead of failing, so the same install serves on CPU and GPU machines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderator.encoders.base import EncoderInfo
from moderator.errors import BackendError, ModelError
from moderator.media.preprocess import normalize
from moderator.models.manifest import IMAGE_INPUT, TEXT_INPUT, Manifest, load_manifest
from moderator.models.tokenizer import TextTokenizer
from moderator.settings import EncoderSettings

log = logging.getLogger(__name__)

AUTO = "auto"  # encoder.precision: the fastest variant here whose agreement with fp32 is good enough
AUTO_BATCH, AUTO_RUNS = 16, 3  # what precision auto times per variant at start

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# The precision asked for is the one served, or the encoder refuses to start: a silent fp32 in its
# place would serve another model's scores (thresholds are calibrated per variant) at a fraction of
# the throughput the deployment was sized for.
FP16_ON_CPU = (
    "precision fp16 needs a GPU execution provider (TensorRT or CUDA) and only {} can run "
    "(onnxruntime runs fp16 graphs slower than fp32 on CPU and crashes optimising them): "
    "refusing rather than serving another precision; ask for fp32, or int8 on CPUs"
)


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a runtime dependency, absent only in broken installs
        raise ModelError("the onnx backend needs onnxruntime: pip install onnxruntime (GPUs: the gpu extra, docs/operations.md#gpu)") from exc
    return onnxruntime


def gpu_present() -> bool:
    """True when an NVIDIA driver is loaded (CUDA providers can start)."""
    return Path("/proc/driver/nvidia/version").exists()


def choose_providers(requested: Sequence[str] | None) -> list[str]:
    """Providers to ask onnxruntime for, best first, always ending with CPU.

    Raises:
        ModelError: a requested provider is not installed.
    """
    available = _ort().get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ModelError(f"execution providers {missing} are not installed; available: {available}")
        chosen = list(requested)
    else:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
        if not gpu_present():
            dropped = [p for p in chosen if p != "CPUExecutionProvider"]
            if dropped:
                log.info("no NVIDIA driver found: not using %s", ", ".join(dropped))
            chosen = ["CPUExecutionProvider"]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def session_options(ort, intra_op_threads: int, spinning: bool):
    """Options of every session this backend opens. ``spinning``: onnxruntime's intra-op threads
    spin-wait between operators by default, which on cores shared with the decoders is CPU taken
    from them (docs/benchmarks.md#spinning)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


class OnnxEncoder:
    """Image and text encoders of one model directory, run by onnxruntime in this process."""

    backend = "onnx"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        precision: str = "fp32",
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        intra_op_spinning: bool = False,
        verify_checksums: bool = True,
        auto_min_cosine: float = 0.998,
    ) -> None:
        ort = _ort()
        self.model_dir = Path(model_dir)
        self.manifest: Manifest = load_manifest(self.model_dir, verify=verify_checksums)
        wanted = choose_providers(providers)
        self.auto: dict[str, str] = {}  # precision auto: what was measured or ruled out, per variant
        self._threads, self._spinning = intra_op_threads, intra_op_spinning
        if precision == AUTO:
            precision, self.auto = self._fastest(ort, wanted, auto_min_cosine)
        if precision not in self.manifest.variants:
            raise ModelError(f"{self.model_dir}: no {precision!r} variant; the manifest has {sorted(self.manifest.variants)}")
        if precision == "fp16" and not set(wanted) & set(GPU_PROVIDERS):
            raise ModelError(FP16_ON_CPU.format(wanted))
        self._open(ort, precision, wanted)
        fell_back = [p for p in wanted if p not in self.providers]
        if fell_back:
            log.warning("execution providers %s could not start; running on %s", fell_back, list(self.providers))
        if self.precision == "fp16" and not set(self.providers) & set(GPU_PROVIDERS):
            raise ModelError(FP16_ON_CPU.format(list(self.providers)) + f" (the GPU providers {fell_back} failed to start)")
        self._tokenizer = TextTokenizer(self.model_dir / self.manifest.tokenizer.path, self.manifest.context_length, self.manifest.pad_token_id)
        pre = self.manifest.preprocess
        self._mean, self._std, self._size = pre.mean, pre.std, pre.image_size
        self._closed = threading.Event()

    def _open(self, ort, precision: str, wanted: list[str]) -> None:
        self.precision = precision
        variant = self.manifest.variants[precision]
        opts = session_options(ort, self._threads, self._spinning)
        try:
            self._image = ort.InferenceSession(str(self.model_dir / variant.image_encoder.path), opts, providers=wanted)
            self._text = ort.InferenceSession(str(self.model_dir / variant.text_encoder.path), opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise ModelError(f"{self.model_dir}: onnxruntime cannot load the {precision} graphs: {exc}") from exc
        self.providers = tuple(self._image.get_providers())

    def _fastest(self, ort, wanted: list[str], floor: float) -> tuple[str, dict[str, str]]:
        """precision auto: the variant that encodes images fastest here, among fp32 and those whose
        recorded agreement with fp32 reaches ``floor`` (fp16 only with a GPU provider). Measured
        now, on this machine's providers: a manifest's speed figures would be another machine's."""
        report: dict[str, str] = {}
        candidates = []
        for name, variant in sorted(self.manifest.variants.items()):
            if name == "fp16" and not set(wanted) & set(GPU_PROVIDERS):
                report[name] = "not measured: fp16 needs a GPU provider"
            elif name != "fp32" and variant.agreement is None:
                report[name] = f"not measured: no agreement with fp32 recorded (moderator models measure {self.model_dir})"
            elif name != "fp32" and variant.agreement is not None and variant.agreement.worst < floor:
                report[name] = f"not measured: cosine to fp32 {variant.agreement.worst:.6f} is under auto_min_cosine {floor}"
            else:
                candidates.append(name)
        rates = {name: self._images_per_s(ort, name, wanted) for name in candidates} if len(candidates) > 1 else {"fp32": 0.0}
        best = max(rates, key=lambda n: rates[n])
        for name, rate in rates.items():
            report[name] = f"{rate:.1f} images/s" if rate else "the only candidate"
        log.info("precision auto chose %s: %s", best, "; ".join(f"{n} {why}" for n, why in sorted(report.items())))
        return best, report

    def _images_per_s(self, ort, precision: str, wanted: list[str]) -> float:
        """Image encoder throughput of one variant: AUTO_BATCH random images, once to warm up, then
        AUTO_RUNS times (content does not change the work a graph does)."""
        opts = session_options(ort, self._threads, self._spinning)
        path = self.model_dir / self.manifest.variants[precision].image_encoder.path
        pre = self.manifest.preprocess
        pixels = np.random.default_rng(0).integers(0, 256, (AUTO_BATCH, pre.image_size, pre.image_size, 3), dtype=np.uint8)
        feed = {IMAGE_INPUT: normalize(pixels, pre.mean, pre.std)}
        try:
            session = ort.InferenceSession(str(path), opts, providers=wanted)
            session.run(None, feed)
            start = time.perf_counter()
            for _ in range(AUTO_RUNS):
                session.run(None, feed)
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{self.model_dir}: precision auto could not run the {precision} image graph: {exc}") from exc
        return AUTO_RUNS * AUTO_BATCH / (time.perf_counter() - start)

    @classmethod
    def from_settings(cls, settings: EncoderSettings) -> OnnxEncoder:
        return cls(
            settings.model_dir,
            precision=settings.precision,
            providers=settings.providers,
            intra_op_threads=settings.intra_op_threads,
            intra_op_spinning=settings.intra_op_spinning,
            verify_checksums=settings.verify_checksums,
            auto_min_cosine=settings.auto_min_cosine,
        )

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
            providers=self.providers,
        )

    def connect(self) -> None:
        """Nothing to connect to: the model runs in this process."""

    def ready(self) -> bool:
        return not self._closed.is_set()

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.ndim != 4 or pixels.shape[1:] != (self._size, self._size, 3):
            raise ValueError(f"expected uint8 [N,{self._size},{self._size},3], got {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros((0, self.manifest.embed_dim), np.float32)
        return self._run(self._image, IMAGE_INPUT, normalize(pixels, self._mean, self._std))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.manifest.embed_dim), np.float32)
        return self._run(self._text, TEXT_INPUT, self._tokenizer(texts))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return self._tokenizer(texts)

    def _run(self, session, input_name: str, feed: np.ndarray) -> np.ndarray:
        if self._closed.is_set():
            raise BackendError("encoder is closed")
        try:
            return session.run(None, {input_name: feed})[0]
        except Exception as exc:  # onnxruntime's error types are not part of a stable hierarchy
            raise BackendError(f"onnxruntime failed: {exc}") from exc

    def close(self) -> None:
        self._closed.set()
