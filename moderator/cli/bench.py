"""``moderator bench``: the bare encoder and the whole service through a real broker, side by side.

With ``--backend ray|triton`` every step runs twice in the same run, once with the in-process
onnx encoder (the baseline) and once through the backend (a local Ray cluster or a PyTriton
server started here), and the ratios between the two are printed.

1. Encoder: the same model, batch size and threads, fed preprocessed batches through the
   backend's client.
2. End to end: the service as a child process over a real broker; a backlog of photo-sized
   JPEGs is produced and verdicts are timed as they arrive (steady state: the first batch's
   arrival starts the clock).
3. Reposts (``--repeats``, default 0.3): a second backlog of the same size in which that fraction
   are images already decided in step 2 (the rest new), through the same service: the result
   cache decides them without decode or encode. Printed beside step 2's rate, with the ratio.
4. Latency: images produced at a steady rate (half the encoder's throughput), each timed from
   its send to its verdict's arrival; p50 and p99.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from moderator import bundled
from moderator.errors import StartupError
from moderator.local.broker import LocalKafka, create_topics
from moderator.local.collect import OutputCollector
from moderator.local.samples import jpeg_stream
from moderator.local.service import ServiceProcess, free_port


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="bare encoder vs end-to-end through Kafka, measured in one run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--backend",
        choices=("onnx", "ray", "triton"),
        default="onnx",
        help="measure this backend beside the in-process onnx baseline (starts a local Ray or PyTriton)",
    )
    p.add_argument("--model", type=Path, help="model directory (default: a random-weight ViT-B/32, built once into .cache/)")
    p.add_argument("--architecture", default="vit-b-32", help="architecture of the random model when --model is not given")
    p.add_argument("--images", type=int, default=256, help="images for each throughput measurement")
    p.add_argument("--batch", type=int, default=16, help="encoder batch size (both measurements)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = one per core)")
    p.add_argument(
        "--precision",
        help="model variant to measure (default: the settings' encoder.precision, from MODERATOR_ENCODER__PRECISION or --config)",
    )
    p.add_argument(
        "--versus-precision",
        metavar="PRECISION",
        help="also measure the onnx encoder and the service at this precision in the same run (e.g. fp32 beside --precision int8), with the ratios",
    )
    p.add_argument(
        "--spinning",
        action=argparse.BooleanOptionalAction,
        help="onnxruntime's intra-op threads spin-wait between operators (encoder.intra_op_spinning; default: the settings')",
    )
    p.add_argument(
        "--versus-spinning",
        action="store_true",
        help="also measure the onnx encoder and the service with spinning the other way in the same run, with the ratios",
    )
    p.add_argument(
        "--decode",
        choices=("fast", "exact"),
        default="fast",
        help="the service's decode path (media.fast_decode); benchmarks/decode.py compares the two per image",
    )
    p.add_argument(
        "--decode-mode",
        choices=("threads", "processes"),
        help="where the service decodes (media.decode_mode; default: the settings'); benchmarks/decode_workers.py compares the two",
    )
    p.add_argument(
        "--crops",
        choices=("auto", "centre", "cover"),
        help="what the service scores of a non-square image (media.crops; default: the settings'); the bare encoder encodes the same squares",
    )
    p.add_argument("--workers", type=_at_least_one, default=1, help="service processes in the consumer group, each a worker as `moderator run` starts one")
    p.add_argument("--decode-workers", type=_at_least_one, help="decode processes (or threads) per worker (media.decode_workers; default: the settings')")
    p.add_argument(
        "--pdq",
        action=argparse.BooleanOptionalAction,
        help="the service hashes every frame with PDQ (hashing.pdq; default: the settings', on); off measures decoding without it",
    )
    p.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the pipeline around the encoder: the same images through a tiny random model (pipeline_* figures)",
    )
    p.add_argument("--config", type=Path, help="YAML settings file whose encoder.precision is the default of --precision")
    p.add_argument("--latency-images", type=int, default=64, help="images sent at a steady rate to measure latency")
    p.add_argument(
        "--repeats", type=float, default=0.3, help="fraction of reposts (images decided before) in a second backlog measured beside the first; 0 = skip"
    )
    p.add_argument("--bootstrap", help="use this broker instead of starting the local one")
    p.add_argument("--port", type=int, default=29192, help="port of the local broker to start (default 29192)")
    p.set_defaults(handler=bench)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def settle_options(args: argparse.Namespace) -> None:
    """Every service option the flags leave unset takes what the settings say (environment, then
    the settings file), as `moderator run` would read them, read once. The service processes the
    bench starts are given them explicitly: they do not inherit this environment's MODERATOR_*
    variables."""
    from moderator.settings import load_settings

    configured = load_settings(args.config)
    args.precision = args.precision or configured.encoder.precision
    args.spinning = configured.encoder.intra_op_spinning if args.spinning is None else args.spinning
    args.pdq = configured.hashing.pdq if args.pdq is None else args.pdq
    args.decode_mode = args.decode_mode or configured.media.decode_mode
    args.decode_workers = args.decode_workers or configured.media.decode_workers
    args.crops = args.crops or configured.media.crops
    args.max_crops = configured.media.max_crops


def ensure_model(args: argparse.Namespace, architecture: str | None = None) -> Path:
    """--model, else a random-weight model of ``architecture`` (default --architecture), built once."""
    if args.model is not None and architecture is None:
        return args.model
    architecture = architecture or args.architecture
    path = bundled.work_dir() / "models" / f"{architecture}-random"
    if not (path / "manifest.json").is_file():
        from moderator.models.builder import build_random_model

        _say(args, f"building a random-weight {architecture} model into {path} (once)")
        build_random_model(path, architecture)
    return path


def _say(args: argparse.Namespace, msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr if args.json else sys.stdout, flush=True)


def encoder_throughput(encoder, pixels: np.ndarray, batch: int, squares_per_image: float = 1.0) -> float:
    """Images per second through ``encoder.encode_images`` on preprocessed batches of squares
    (``squares_per_image`` of them an image: ``media.crops``)."""
    encoder.encode_images(pixels[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        encoder.encode_images(pixels[i : i + batch])
    return len(pixels) / squares_per_image / (time.perf_counter() - start)


def preprocess_all(model: Path, images: list[bytes], crops: str = "auto", max_crops: int = 5) -> np.ndarray:
    """The squares the service scores of each image (``media.crops``), concatenated."""
    from moderator.media.decode import DecodeLimits, decode_image
    from moderator.media.preprocess import Preprocessor
    from moderator.models.manifest import load_manifest

    pre = Preprocessor(load_manifest(model, verify=False).preprocess, crops=crops, max_crops=max_crops)
    return np.concatenate([pre.squares(decode_image(b, DecodeLimits())) for b in images])


@contextlib.contextmanager
def backend_servers(args: argparse.Namespace, model: Path):
    """Start what ``--backend`` needs (a local Ray cluster, a PyTriton server); yields the encoder
    settings of every backend measured, the in-process onnx baseline first."""
    base = {"model_dir": str(model), "intra_op_threads": args.threads, "intra_op_spinning": args.spinning, "precision": args.precision}
    backends = {"onnx": {**base, "backend": "onnx"}}
    with contextlib.ExitStack() as stack:
        cache = bundled.work_dir() / "bench"
        if args.backend == "ray":
            from moderator.local.ray import LocalRay

            _say(args, "starting a local Ray cluster")
            ray = LocalRay(port=free_port(), log_path=cache / "ray.log").start()
            stack.callback(ray.stop)
            stack.callback(_leave_ray)  # runs first: this process leaves before the cluster stops
            backends["ray"] = {
                **base,
                "backend": "ray",
                "ray": {
                    "address": ray.address,
                    "replica_batch_size": max(64, args.batch),
                    "app_name": "moderator-bench",
                },
            }
        elif args.backend == "triton":
            from moderator.local.triton import LocalTriton
            from moderator.serving.triton_repo import RepoOptions, write_repository

            repo = cache / "triton-repo"
            write_repository(model, repo, RepoOptions(kind="KIND_CPU", max_batch_size=max(64, args.batch)))
            _say(args, "starting a Triton server (PyTriton)")
            triton = LocalTriton(repo, free_port(), free_port(), free_port(), cache / "triton.log", threads=args.threads).start()
            stack.callback(triton.stop)
            backends["triton"] = {**base, "backend": "triton", "triton": {"url": triton.grpc_url}}
        yield backends


def _leave_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def bench(args: argparse.Namespace) -> int:
    from moderator.encoders import create_encoder
    from moderator.settings import load_settings

    settle_options(args)
    model = ensure_model(args)
    auto: dict[str, str] = {}
    if args.precision == "auto":  # chosen once, here, so the bare encoder and the service measure the same variant
        from moderator.encoders.onnx import OnnxEncoder

        chooser = OnnxEncoder(model, precision="auto", intra_op_threads=args.threads, intra_op_spinning=args.spinning)
        args.precision, auto = chooser.precision, chooser.auto
        chooser.close()
        _say(args, f"precision auto: {args.precision} ({'; '.join(f'{k} {v}' for k, v in sorted(auto.items()))})")
    images = jpeg_stream(args.images, seed=1)
    pixels = preprocess_all(model, images, args.crops, args.max_crops)
    squares = len(pixels) / len(images)  # the encoder's work per image, as the service scores it
    (bundled.work_dir() / "bench").mkdir(parents=True, exist_ok=True)
    broker = None
    with backend_servers(args, model) as backends:
        measured: dict[str, dict] = {}
        for name, encoder_settings in backends.items():
            _say(args, f"encoder alone ({name}): {args.images} images, batch {args.batch}")
            encoder = create_encoder(load_settings(encoder=encoder_settings).encoder)
            try:
                rate = encoder_throughput(encoder, pixels, args.batch, squares)
                info = encoder.info()
            finally:
                encoder.close()
            _say(args, f"encoder ({name}): {rate:.1f} images/s")
            if info.precision != args.precision:
                raise StartupError(f"asked for precision {args.precision}, the {name} encoder serves {info.precision}: the figures would be for another model")
            measured[name] = {"encoder_images_per_s": round(rate, 2), "info": info}
        versus, label = versus_settings(args, backends["onnx"])
        if versus is not None:
            _say(args, f"encoder alone (onnx, {label}): {args.images} images, batch {args.batch}")
            encoder = create_encoder(load_settings(encoder=versus).encoder)
            try:
                rate, served = encoder_throughput(encoder, pixels, args.batch, squares), encoder.info().precision
            finally:
                encoder.close()
            if served != versus["precision"]:
                raise StartupError(f"asked for precision {versus['precision']}, the encoder serves {served}")
            measured["versus"] = {"precision": served, "intra_op_spinning": versus["intra_op_spinning"], "encoder_images_per_s": round(rate, 2)}
        if args.bootstrap is None:
            broker = LocalKafka(port=args.port)
            started = not broker.running()
            _say(args, f"starting the local broker on {broker.bootstrap}")
            broker.start()
            bootstrap = broker.bootstrap
        else:
            started, bootstrap = False, args.bootstrap
        try:
            for name, encoder_settings in backends.items():
                rate = measured["onnx"]["encoder_images_per_s"]
                measured[name].update(end_to_end(args, bootstrap, encoder_settings, images, name, latency_rate=max(1.0, rate / 2)))
            if versus is not None:
                e2e = end_to_end(args, bootstrap, versus, images, f"versus-{label}", latency_rate=1.0, throughput_only=True)
                measured["versus"].update({k: v for k, v in e2e.items() if k != "service_exit_code"})
            if args.pipeline:
                # The pipeline around the encoder: the same images through a tiny encoder (~0.4 ms an
                # image), so decode, hashing, Kafka and verdicts are what is measured.
                tiny = {**backends["onnx"], "model_dir": str(ensure_model(args, "tiny")), "precision": "fp32"}
                pipeline = end_to_end(args, bootstrap, tiny, images, "pipeline", latency_rate=1.0, throughput_only=True)
                measured["onnx"].update({f"pipeline_{k}": v for k, v in pipeline.items() if k != "service_exit_code"})
        finally:
            if broker is not None and started:
                broker.stop()

    info = measured["onnx"].pop("info")
    base = measured["onnx"]
    result = {
        "model": info.model_name,
        "architecture": info.architecture,
        "precision": info.precision,
        **({"precision_auto": auto} if auto else {}),
        "decode": args.decode,
        "decode_mode": args.decode_mode,
        "crops": args.crops,
        "squares_per_image": round(squares, 3),
        "pdq": args.pdq,
        "providers": list(info.providers),
        "batch_size": args.batch,
        "threads": args.threads or os.cpu_count(),
        "workers": args.workers,
        "decode_workers": args.decode_workers,
        "intra_op_spinning": args.spinning,
        "images": args.images,
        "image_bytes_mean": int(statistics.mean(len(b) for b in images)),
        **base,
        "ratio": float(f"{base['e2e_images_per_s'] / base['encoder_images_per_s']:.4g}"),
    }
    if "versus" in measured:
        vs = measured["versus"]
        result["versus"] = vs
        result[f"encoder_ratio_vs_{label}"] = float(f"{base['encoder_images_per_s'] / vs['encoder_images_per_s']:.4g}")
        result[f"e2e_ratio_vs_{label}"] = float(f"{base['e2e_images_per_s'] / vs['e2e_images_per_s']:.4g}")
    if args.backend != "onnx":
        other = measured[args.backend]
        other.pop("info")
        result["backend"] = args.backend
        result[args.backend] = other
        result["encoder_ratio_vs_onnx"] = float(f"{other['encoder_images_per_s'] / base['encoder_images_per_s']:.4g}")
        result["e2e_ratio_vs_onnx"] = float(f"{other['e2e_images_per_s'] / base['e2e_images_per_s']:.4g}")
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
    return 0


def versus_settings(args: argparse.Namespace, onnx: dict) -> tuple[dict | None, str]:
    """The onnx encoder settings measured beside the baseline (--versus-precision, --versus-spinning)
    and their label in the result's ratio keys: the precision, with the spinning when it differs
    (``e2e_ratio_vs_fp32``, ``e2e_ratio_vs_int8_spinning``)."""
    if not args.versus_precision and not args.versus_spinning:
        return None, ""
    spinning = not args.spinning if args.versus_spinning else args.spinning
    precision = args.versus_precision or args.precision
    label = precision + ("" if spinning == args.spinning else "_spinning" if spinning else "_no_spinning")
    return {**onnx, "precision": precision, "intra_op_spinning": spinning}, label


def end_to_end(
    args: argparse.Namespace,
    bootstrap: str,
    encoder_settings: dict,
    images: list[bytes],
    name: str,
    latency_rate: float,
    throughput_only: bool = False,
) -> dict:
    """The service (``--workers`` child processes in one consumer group) over the broker: backlog
    throughput, with the service's CPU per image and each stage's milliseconds per image (from
    the verdicts' timings); then, unless ``throughput_only``, reposts and latency at a steady
    ``latency_rate``."""
    run_id = f"{int(time.time())}-{os.getpid()}-{name}"
    topic, verdicts, dlq = f"bench-images-{run_id}", f"bench-verdicts-{run_id}", f"bench-dlq-{run_id}"
    partitions = max(2, args.workers)
    collector = None
    service = ServiceGroup(
        [
            ServiceProcess(
                service_settings(args, bootstrap, encoder_settings, topic, verdicts, dlq, f"bench-{run_id}"),
                bundled.work_dir() / "bench" / f"service-{run_id}-{i}.log",
            )
            for i in range(args.workers)
        ]
    )
    try:
        create_topics(bootstrap, {topic: partitions, verdicts: partitions, dlq: 1})
        collector = OutputCollector(bootstrap, verdicts, dlq).start()
        service.start(partitions)
        producer = _producer(bootstrap)
        # Warm-up: one batch a worker through the whole path (group join, first inference), of
        # images not measured later (the result cache would decide them).
        warm = args.batch * args.workers
        _send(producer, topic, jpeg_stream(warm, seed=2), "warm")
        if not collector.wait_count(warm, timeout=300):
            raise RuntimeError(f"warm-up verdicts did not arrive:\n{service.log_tail()}")

        _say(args, f"end to end ({name}): {len(images)} images through {bootstrap}")
        own_before, cpu_before = service.cpu_seconds()
        machine_before = machine_cpu_seconds()
        _send(producer, topic, images, "tput")
        if not collector.wait_count(warm + len(images), timeout=600):
            raise RuntimeError(f"throughput verdicts did not all arrive:\n{service.log_tail()}")
        own_after, cpu_after = service.cpu_seconds()
        machine_after = machine_cpu_seconds()
        cpu_ms, own_ms = ((after - before) * 1e3 / len(images) for before, after in ((cpu_before, cpu_after), (own_before, own_after)))
        e2e_rate = _steady_rate(collector, "tput-", args.batch)
        tput_verdicts = [o.json() for o in collector.snapshot() if o.id.startswith("tput-")]
        served = {v["model"]["precision"] for v in tput_verdicts if "model" in v}
        if served != {encoder_settings["precision"]}:
            raise StartupError(f"asked for precision {encoder_settings['precision']}, the service's verdicts say {sorted(served)}")
        measured = {
            "e2e_images_per_s": round(e2e_rate, 2),
            "cpu_ms_per_image": round(cpu_ms, 2),
            "service_process_cpu_ms_per_image": round(own_ms, 2),
            **(
                {"machine_cpu_ms_per_image": round((machine_after - machine_before) * 1e3 / len(images), 2)}
                if machine_before is not None and machine_after is not None
                else {}
            ),
            "stage_ms_per_image": _stage_ms(tput_verdicts),
        }
        if throughput_only:
            producer.close()
            measured["service_exit_code"] = service.terminate()
            return measured
        repeats = {}
        if args.repeats > 0:
            import random

            n_old = int(round(len(images) * min(args.repeats, 1.0)))
            mixed = jpeg_stream(len(images) - n_old, seed=3) + random.Random(4).sample(images, n_old)
            random.Random(5).shuffle(mixed)
            _say(args, f"end to end with {args.repeats:.0%} reposts ({name}): {len(mixed)} images")
            _send(producer, topic, mixed, "repost")
            if not collector.wait_count(warm + len(images) + len(mixed), timeout=600):
                raise RuntimeError(f"repost verdicts did not all arrive:\n{service.log_tail()}")
            rate = _steady_rate(collector, "repost-", args.batch)
            hits = sum(o.json().get("cached", False) for o in collector.snapshot() if o.id.startswith("repost-"))
            repeats = {
                "repeats": args.repeats,
                "e2e_images_per_s_with_repeats": round(rate, 2),
                "cache_hits": hits,
                "repeats_ratio": float(f"{rate / e2e_rate:.4g}"),
            }

        _say(args, f"latency ({name}): {args.latency_images} images at {latency_rate:.1f}/s")
        sent_at = {}
        t0 = time.monotonic()
        for i, img in enumerate(images[: args.latency_images]):
            while time.monotonic() < t0 + i / latency_rate:
                time.sleep(0.001)
            mid = f"lat-{i}"
            producer.send(topic, key=mid.encode(), value=img, headers=[("moderation-id", mid.encode()), ("content-type", b"image/jpeg")])
            producer.flush()
            sent_at[mid] = time.monotonic()
        if not collector.wait_for(set(sent_at), timeout=300):
            raise RuntimeError(f"latency verdicts did not all arrive:\n{service.log_tail()}")
        got = {o.id: o.received_at for o in collector.snapshot() if o.id in sent_at}
        lat_ms = sorted((got[k] - sent_at[k]) * 1e3 for k in sent_at)
        producer.close()
        code = service.terminate()
        return {
            **measured,
            **repeats,
            "p50_ms": round(statistics.median(lat_ms), 1),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1),
            "latency_rate_per_s": round(latency_rate, 1),
            "service_exit_code": code,
        }
    finally:
        if collector is not None:
            collector.stop()
        service.stop_quietly()


BENCH_POLICY = """\
# Written by moderator bench: three categories of three prompts, thresholds irrelevant to speed.
name: bench
categories:
  - {name: weapons, prompts: [a photo of a knife, a photo of a gun, a photo of a weapon], review: 0.2, block: 0.3}
  - {name: drugs, prompts: [a photo of pills, a photo of a syringe, a photo of drugs], review: 0.2, block: 0.3}
  - {name: fire, prompts: [a photo of fire, a photo of a flame, a photo of smoke], review: 0.2, block: 0.3}
"""


def _bench_policy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_POLICY)
    return path


def service_settings(args: argparse.Namespace, bootstrap: str, encoder: dict, topic: str, verdicts: str, dlq: str, group: str) -> dict:
    """The settings of one service process the bench starts (all others are the defaults)."""
    media = {
        "fast_decode": args.decode == "fast",
        "decode_mode": args.decode_mode,
        "decode_workers": args.decode_workers,
        "crops": args.crops,
        "max_crops": args.max_crops,
    }
    return {
        "kafka": {"bootstrap_servers": bootstrap, "input_topics": [topic], "verdict_topic": verdicts, "dead_letter_topic": dlq, "group_id": group},
        "encoder": encoder,
        "policy": {"path": _bench_policy(bundled.work_dir() / "bench" / "policy.yaml")},
        "batch": {"micro_batch_size": args.batch, "max_wait_ms": 20, "max_in_flight": max(256, 4 * args.batch)},
        "telemetry": {"log_level": "WARNING"},
        "media": {k: v for k, v in media.items() if v is not None},
        "hashing": {"pdq": args.pdq},
    }


class ServiceGroup:
    """The service processes of one measurement: one consumer group of ``--workers`` workers."""

    def __init__(self, services: list[ServiceProcess]) -> None:
        self.services = services

    def start(self, partitions: int, timeout: float = 120.0) -> None:
        """Start every worker, wait until each is ready and the group has settled: every input
        partition assigned and every worker holding some (a rebalance during the measurement would
        be measured)."""
        for s in self.services:
            s.start()
        for s in self.services:
            s.wait_ready()
        deadline = time.monotonic() + timeout
        while True:
            held = [s.metric("moderator_assigned_partitions") or 0 for s in self.services]
            if sum(held) == partitions and all(held):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group did not settle in {timeout}s: partitions held {held} of {partitions}\n{self.log_tail()}")
            time.sleep(0.2)

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds so far of the service processes alone (Kafka, the hand-over, the encoder in
        process, verdicts: one Python process a worker, so per image it bounds one worker's rate),
        and with their decode processes (media.decode_mode: processes), from /proc; where there
        is no /proc, both are the service processes' own, from /metrics (prometheus_client's
        process collector)."""
        own = tree = 0.0
        for s in self.services:
            pid = s.proc.pid if s.proc is not None else None
            if pid is not None and Path(f"/proc/{pid}/stat").exists():
                own, tree = own + tree_cpu_seconds(pid, alone=True), tree + tree_cpu_seconds(pid)
                continue
            seconds = s.metric("process_cpu_seconds_total")
            if seconds is None:
                raise RuntimeError(f"/metrics has no process_cpu_seconds_total\n{s.log_tail()}")
            own, tree = own + seconds, tree + seconds
        return own, tree

    def log_tail(self) -> str:
        return "\n".join(f"--- worker {i} ({s.log_path}):\n{s.log_tail()}" for i, s in enumerate(self.services))

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM every worker at once (one by one, each leaving would hand its partitions to
        the next), then wait for each; the first non-zero exit code, else 0."""
        for s in self.services:
            if s.proc is not None:
                s.proc.send_signal(signal.SIGTERM)
        codes = [s.wait(timeout) for s in self.services]
        return next((c for c in codes if c), 0)

    def stop_quietly(self) -> None:
        for s in self.services:
            s.stop_quietly()


def tree_cpu_seconds(root: int, alone: bool = False) -> float:
    """User + system CPU seconds of process ``root`` (all its threads) and its descendants alive
    now (/proc); ``alone``: of ``root`` only."""
    if alone:
        return _stat(Path(f"/proc/{root}/stat"))[1]
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent, seconds = _stat(entry / "stat")
        except OSError:  # exited meanwhile
            continue
        pid = int(entry.name)
        children.setdefault(parent, []).append(pid)
        cpu[pid] = seconds
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def machine_cpu_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far, over every core (/proc/stat: user, nice,
    system, irq and softirq; not idle, iowait or a hypervisor's steal); None without /proc.
    Beside the service's own figure it shows what the broker and the bench's producer and
    consumer took from the same cores."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:]]
    return (sum(ticks[:7]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> tuple[int, float]:
    """A process's parent and its user + system CPU seconds, from its /proc stat (the fields after
    the command name, which may hold spaces and parentheses)."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stage_ms(verdicts: list[dict]) -> dict:
    """Milliseconds per image by stage, wall time, from the verdicts' timings: decode (each image,
    on a decode thread), queue (polled to encoder call), encode and score (a batch's time over its
    images)."""
    timed = [v["timings"] for v in verdicts if v.get("timings") and v["timings"].get("batch_size")]
    if not timed:
        return {}
    return {
        "decode": round(statistics.mean(t["decode_ms"] for t in timed), 3),
        "queue": round(statistics.mean(t["queue_ms"] for t in timed), 3),
        "encode": round(statistics.mean(t["encode_ms"] / t["batch_size"] for t in timed), 3),
        "score": round(statistics.mean(t["score_ms"] / t["batch_size"] for t in timed), 3),
    }


def _steady_rate(collector: OutputCollector, prefix: str, batch: int) -> float:
    """Verdicts per second of the outputs whose id starts with ``prefix``, from the first batch's
    arrival (steady state)."""
    arrivals = sorted(o.received_at for o in collector.snapshot() if o.id.startswith(prefix))
    skip = min(batch, len(arrivals) - 1)
    return (len(arrivals) - skip) / (arrivals[-1] - arrivals[skip - 1]) if skip else float("nan")


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=20 * 1024 * 1024)


def _send(producer, topic: str, images: list[bytes], prefix: str) -> None:
    for i, img in enumerate(images):
        mid = f"{prefix}-{i}"
        producer.send(topic, key=mid.encode(), value=img, headers=[("moderation-id", mid.encode()), ("content-type", b"image/jpeg")])
    producer.flush()
