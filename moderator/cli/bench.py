"""``moderator bench``: the bare encoder and the whole service through a real broker, side by side.

1. Encoder: the same model, batch size and threads, fed preprocessed batches in-process.
2. End to end: the service as a child process over a real broker; a backlog of photo-sized
   JPEGs is produced and verdicts are timed as they arrive (steady state: the first batch's
   arrival starts the clock).
3. Latency: images produced at a steady rate (half the encoder's throughput), each timed from
   its send to its verdict's arrival; p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from moderator.local.broker import REPO_ROOT, LocalKafka, create_topics
from moderator.local.collect import OutputCollector
from moderator.local.samples import jpeg_stream
from moderator.local.service import ServiceProcess


def ensure_model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return args.model
    path = REPO_ROOT / ".cache" / "models" / f"{args.architecture}-random"
    if not (path / "manifest.json").is_file():
        from moderator.models.builder import build_random_model

        _say(args, f"building a random-weight {args.architecture} model into {path} (once)")
        build_random_model(path, args.architecture)
    return path


def _say(args: argparse.Namespace, msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr if args.json else sys.stdout, flush=True)


def encoder_throughput(model: Path, images: list[bytes], batch: int, threads: int) -> tuple[float, dict]:
    from moderator.encoders.onnx import OnnxEncoder
    from moderator.media.decode import DecodeLimits, decode_image
    from moderator.media.preprocess import Preprocessor

    encoder = OnnxEncoder(model, intra_op_threads=threads)
    try:
        pre = Preprocessor(encoder.info().preprocess)
        pixels = np.stack([pre(decode_image(b, DecodeLimits())) for b in images])
        encoder.encode_images(pixels[:batch])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(pixels), batch):
            encoder.encode_images(pixels[i : i + batch])
        rate = len(pixels) / (time.perf_counter() - start)
        info = encoder.info()
        return rate, {"model": info.model_name, "architecture": info.architecture, "precision": info.precision,
                      "providers": list(info.providers)}
    finally:
        encoder.close()


def bench(args: argparse.Namespace) -> int:
    model = ensure_model(args)
    images = jpeg_stream(args.images, seed=1)
    _say(args, f"encoder alone: {args.images} images, batch {args.batch}")
    enc_rate, info = encoder_throughput(model, images, args.batch, args.threads)
    _say(args, f"encoder: {enc_rate:.1f} images/s")

    broker = None
    if args.bootstrap is None:
        broker = LocalKafka(port=args.port)
        started = not broker.running()
        _say(args, f"starting the local broker on {broker.bootstrap}")
        broker.start()
        bootstrap = broker.bootstrap
    else:
        started, bootstrap = False, args.bootstrap
    run_id = f"{int(time.time())}-{os.getpid()}"
    topic, verdicts, dlq = f"bench-images-{run_id}", f"bench-verdicts-{run_id}", f"bench-dlq-{run_id}"
    service = collector = None
    try:
        create_topics(bootstrap, {topic: 2, verdicts: 2, dlq: 1})
        collector = OutputCollector(bootstrap, verdicts, dlq).start()
        service = ServiceProcess({
            "kafka": {"bootstrap_servers": bootstrap, "input_topics": [topic], "verdict_topic": verdicts,
                      "dead_letter_topic": dlq, "group_id": f"bench-{run_id}"},
            "encoder": {"model_dir": model, "intra_op_threads": args.threads},
            "policy": {"path": _bench_policy(REPO_ROOT / ".cache" / "bench" / "policy.yaml")},
            "batch": {"max_size": args.batch, "max_wait_ms": 20, "max_in_flight": max(256, 4 * args.batch)},
            "telemetry": {"log_level": "WARNING"},
        }, REPO_ROOT / ".cache" / "bench" / f"service-{run_id}.log").start()
        service.wait_ready()
        producer = _producer(bootstrap)
        # Warm-up: one batch through the whole path (group join, first inference).
        _send(producer, topic, images[: args.batch], "warm")
        if not collector.wait_count(args.batch, timeout=300):
            raise RuntimeError(f"warm-up verdicts did not arrive:\n{service.log_tail()}")

        _say(args, f"end to end: {args.images} images through {bootstrap}")
        _send(producer, topic, images, "tput")
        if not collector.wait_count(args.batch + args.images, timeout=600):
            raise RuntimeError(f"throughput verdicts did not all arrive:\n{service.log_tail()}")
        arrivals = sorted(o.received_at for o in collector.snapshot() if o.id.startswith("tput-"))
        skip = min(args.batch, len(arrivals) - 1)
        e2e_rate = (len(arrivals) - skip) / (arrivals[-1] - arrivals[skip - 1]) if skip else float("nan")

        rate = max(1.0, enc_rate / 2)
        _say(args, f"latency: {args.latency_images} images at {rate:.1f}/s")
        sent_at = {}
        lat_images = images[: args.latency_images]
        t0 = time.monotonic()
        for i, img in enumerate(lat_images):
            while time.monotonic() < t0 + i / rate:
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
        result = {
            **info,
            "batch_size": args.batch,
            "threads": args.threads or os.cpu_count(),
            "images": args.images,
            "image_bytes_mean": int(statistics.mean(len(b) for b in images)),
            "encoder_images_per_s": round(enc_rate, 2),
            "e2e_images_per_s": round(e2e_rate, 2),
            "ratio": float(f"{e2e_rate / enc_rate:.4g}"),
            "p50_ms": round(statistics.median(lat_ms), 1),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1),
            "latency_rate_per_s": round(rate, 1),
            "service_exit_code": code,
        }
    finally:
        if collector is not None:
            collector.stop()
        if service is not None:
            service.stop_quietly()
        if broker is not None and started:
            broker.stop()
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
    return 0


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


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=20 * 1024 * 1024)


def _send(producer, topic: str, images: list[bytes], prefix: str) -> None:
    for i, img in enumerate(images):
        mid = f"{prefix}-{i}"
        producer.send(topic, key=mid.encode(), value=img, headers=[("moderation-id", mid.encode()), ("content-type", b"image/jpeg")])
    producer.flush()
