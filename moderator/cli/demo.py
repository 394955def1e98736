"""``moderator demo``: one command from nothing to verdicts on a real broker."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from moderator import bundled
from moderator.local.broker import LocalKafka, create_topics
from moderator.local.collect import OutputCollector
from moderator.local.samples import (
    animated_messages,
    broken_messages,
    example_messages,
    hostile_messages,
    load_examples,
    sample_messages,
)
from moderator.local.service import ServiceProcess


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="start a local broker and the service, send sample images, print verdicts")
    p.add_argument("--port", type=int, default=29092, help="port of the local broker to start or reuse (default 29092)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: models/default, the trained pictogram model)")
    p.add_argument("--policy", type=Path, default=None, help="policy file (default: policies/default.yaml)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for every verdict")
    p.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    model = args.model or bundled.model_dir()
    policy = args.policy or bundled.policy_path()
    broker = LocalKafka(port=args.port)
    we_started = not broker.running()
    print(f"1. starting a local Apache Kafka broker on {broker.bootstrap} (deploy/local/kafka.sh; jars fetched once with mvn)")
    broker.start()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    images, verdicts, dlq = f"demo-images-{run_id}", f"demo-verdicts-{run_id}", f"demo-dead-letters-{run_id}"
    service = collector = None
    try:
        print(f"2. creating topics {images} (3 partitions), {verdicts}, {dlq}")
        create_topics(broker.bootstrap, {images: 3, verdicts: 3, dlq: 1})
        collector = OutputCollector(broker.bootstrap, verdicts, dlq).start()
        log_path = bundled.work_dir() / "demo" / f"service-{run_id}.log"
        service = ServiceProcess(
            {
                "kafka": {
                    "bootstrap_servers": broker.bootstrap,
                    "input_topics": [images],
                    "verdict_topic": verdicts,
                    "dead_letter_topic": dlq,
                    "group_id": f"demo-{run_id}",
                },
                "encoder": {"model_dir": model},
                "policy": {"path": policy},
                "batch": {"micro_batch_size": 8, "max_wait_ms": 50},
            },
            log_path,
        ).start()
        print(f"3. starting the service (model {model.name}, policy {policy.name}); logs in {log_path}")
        service.wait_ready()
        print(f"   ready: {service.url('/metrics')}")
        prefix = f"demo-{run_id}"
        examples = bundled.examples_dir()
        # hostile inputs whose output carries a known id (the others name their source offset)
        hostile = [s for s in hostile_messages(f"{prefix}-hostile") if s.id]
        labelled: set[str] = set()
        if (examples / "labels.csv").is_file() and "random" not in model.name:
            samples = example_messages(load_examples(examples, limit=24), prefix) + animated_messages(f"{prefix}-animated")
            labelled = {s.id for s in samples}
            samples += broken_messages(prefix) + hostile
            print(
                f"4. producing {len(samples)} messages: labelled pictograms from examples/ in every image format and "
                f"both encodings, animations whose harmful frame is not the first, broken inputs, and {len(hostile)} "
                "hostile ones (docs/wire-format.md#limits)"
            )
        else:
            samples = sample_messages(prefix=prefix) + hostile
            print(
                f"4. producing {len(samples)} messages: every image format in both encodings, broken inputs, "
                f"and {len(hostile)} hostile ones (docs/wire-format.md#limits)"
            )
        _produce(broker.bootstrap, images, samples)
        print("5. verdicts and dead letters as they arrive:\n")
        print(f"   {'ID':<30} {'OUTPUT':<11} {'DECISION / REASON':<20} DETAIL")
        expected = {s.id: s for s in samples}
        shown: set[str] = set()
        deadline = time.monotonic() + args.timeout
        while len(shown) < len(expected) and time.monotonic() < deadline:
            for out in collector.snapshot():
                if out.id in shown or out.id not in expected:
                    continue
                shown.add(out.id)
                _print_output(out, expected[out.id], run_id)
            time.sleep(0.1)
        missing = sorted(set(expected) - shown)
        print("\n6. stopping the service (SIGTERM: drain, commit, exit)")
        code = service.terminate()
        outputs = [o for o in collector.snapshot() if o.id in expected]
        decisions = Counter(o.json()["decision"] for o in outputs if o.kind == "verdict")
        reasons = Counter(o.headers.get("moderator-error-reason") for o in outputs if o.kind == "dead_letter")
        print(f"   service exited with code {code}")
        print(f"   verdicts: {dict(decisions)}; dead letters: {dict(reasons)}")
        agree = [_agrees(o.json(), expected[o.id]) for o in outputs if o.kind == "verdict" and o.id in labelled]
        if agree:
            print(f"   decisions that match the example's label: {sum(agree)}/{len(agree)}")
        if "random" in model.name:
            print("   note: models/tiny-random has RANDOM weights; its decisions show the pipeline working, not judgement.")
        if missing:
            print(f"   MISSING outputs for {len(missing)} messages: {missing}")
            return 1
        return 0 if code == 0 else 1
    finally:
        if collector is not None:
            collector.stop()
        if service is not None:
            service.stop_quietly()
        if we_started:
            print("7. stopping the local broker")
            broker.stop()


def _produce(bootstrap: str, topic: str, samples) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=20 * 1024 * 1024)
    for s in samples:
        producer.send(topic, key=s.key, value=s.value, headers=s.headers)
    producer.flush()
    producer.close()


def _agrees(verdict: dict, sample) -> bool:
    """A labelled example's verdict agrees when exactly its categories fire ("knife (weapons) as PNG")."""
    label = sample.description.split("(", 1)[1].split(")", 1)[0]
    expected = set() if label == "benign" else {c.strip() for c in label.split(",")}
    return {c["name"] for c in verdict["categories"] if c["fired"]} == expected


def _print_output(out, sample, run_id: str) -> None:
    short = out.id.replace(f"demo-{run_id}-", "")[:30]
    if out.kind == "verdict":
        v = out.json()
        fired = [c["name"] for c in v["categories"] if c["fired"]]
        top = max(v["categories"], key=lambda c: c["score"])
        detail = f"{', '.join(fired) or 'nothing fired'} (top {top['name']} {top['score']:.3f}); {sample.description}"
        flag = "" if sample.expect == "verdict" else "  (UNEXPECTED)"
        print(f"   {short:<30} {'verdict':<11} {v['decision']:<20} {detail}{flag}")
    else:
        reason = out.headers.get("moderator-error-reason", "?")
        flag = "" if sample.expect == reason else f"  (UNEXPECTED, expected {sample.expect})"
        msg = out.headers.get("moderator-error-message", "")[:70]
        print(f"   {short:<30} {'dead letter':<11} {reason:<20} {msg}{flag}")
