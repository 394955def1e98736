"""One real broker for the session (deploy/local/kafka.sh), unique topics and groups per test."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from moderator.local.broker import LocalKafka, create_topics
from moderator.local.collect import OutputCollector
from moderator.local.service import ServiceProcess, free_port
from tests.conftest import TINY_MODEL, TINY_POLICY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> LocalKafka:
    kafka = LocalKafka(port=free_port(2), data_dir=tmp_path_factory.mktemp("kafka"))
    kafka.start()
    yield kafka
    kafka.stop()


@dataclass
class Topics:
    input: str
    verdicts: str
    dead_letters: str
    group: str
    partitions: int


@pytest.fixture
def topics(broker, request):
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def make(partitions: int = 3) -> Topics:
        suffix = f"{base}-{uuid.uuid4().hex[:6]}"
        t = Topics(f"in-{suffix}", f"verdicts-{suffix}", f"dlq-{suffix}", f"group-{suffix}", partitions)
        create_topics(broker.bootstrap, {t.input: partitions, t.verdicts: partitions, t.dead_letters: 1})
        return t

    return make


@pytest.fixture
def service(broker, tmp_path):
    """Factory: ``service(topics, **setting_overrides)`` starts ``moderator run`` as a child process."""
    started: list[ServiceProcess] = []

    def start(t: Topics, wait_ready: bool = True, **overrides) -> ServiceProcess:
        settings = {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "input_topics": [t.input],
                "verdict_topic": t.verdicts,
                "dead_letter_topic": t.dead_letters,
                "group_id": t.group,
                "commit_interval_ms": 200,
                "session_timeout_ms": 10_000,
                "heartbeat_interval_ms": 1_000,
            },
            "encoder": {"model_dir": TINY_MODEL},
            "policy": {"path": TINY_POLICY},
            "batch": {"micro_batch_size": 8, "max_wait_ms": 20},
        }
        for section, values in overrides.items():
            settings[section] = {**settings.get(section, {}), **values} if isinstance(values, dict) else values
        svc = ServiceProcess(settings, tmp_path / f"service-{len(started)}.log").start()
        started.append(svc)
        if wait_ready:
            svc.wait_ready()
        return svc

    yield start
    for svc in started:
        svc.stop_quietly()


@pytest.fixture
def collector(broker):
    made: list[OutputCollector] = []

    def make(t: Topics) -> OutputCollector:
        c = OutputCollector(broker.bootstrap, t.verdicts, t.dead_letters).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def produce(bootstrap: str, topic: str, messages) -> None:
    """messages: iterable of (id, key, value, headers)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=20 * 1024 * 1024)
    for _id, key, value, headers in messages:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def small_jpegs(prefix: str, count: int):
    from moderator.local.samples import COLOURS, SHAPES, draw, encode

    colours = list(COLOURS.values())
    images = [encode(draw(SHAPES[i % 5], colours[i % 5], (64, 48)), "JPEG") for i in range(25)]
    for i in range(count):
        mid = f"{prefix}-{i}"
        yield mid, mid.encode(), images[i % 25], [("moderation-id", mid.encode()), ("content-type", b"image/jpeg")]


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0}


def input_offsets(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """id -> (partition, offset) of every input message, read back from the topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
        for _tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                mid = dict(r.headers or []).get("moderation-id", b"").decode() or f"{topic}/{r.partition}/{r.offset}"
                out[mid] = (r.partition, r.offset)
    consumer.close()
    return out


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` against a deadline (the interval only paces the polling; nothing waits a
    fixed time for something to happen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def log_of(svc: ServiceProcess) -> str:
    return Path(svc.log_path).read_text(errors="replace")


# --- encoder backends: one local Ray cluster and one Triton server per session -------------------


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory):
    from moderator.local.ray import LocalRay

    # Logical CPUs, not cores: several small test applications share the cluster at once.
    ray = LocalRay(port=free_port(), num_cpus=8, log_path=tmp_path_factory.mktemp("ray") / "ray.log", metrics_port=free_port()).start()
    yield ray
    import ray as ray_module

    if ray_module.is_initialized():
        ray_module.shutdown()
    ray.stop()


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory) -> Path:
    from moderator.serving.triton_repo import RepoOptions, write_repository

    repo = tmp_path_factory.mktemp("triton-repo")
    # A small max batch size so that clients must split larger batches.
    write_repository(TINY_MODEL, repo, RepoOptions(kind="KIND_CPU", max_batch_size=16))
    return repo


@pytest.fixture(scope="session")
def local_triton(triton_repo, tmp_path_factory):
    from moderator.local.triton import LocalTriton

    server = LocalTriton(triton_repo, free_port(), free_port(), free_port(), tmp_path_factory.mktemp("triton") / "triton.log")
    server.start()
    yield server
    server.stop()


def ray_connect(local_ray) -> None:
    """Join the session's Ray cluster from the test process (never start another one)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=local_ray.address, include_dashboard=False, log_to_driver=False)


def delete_serve_app(local_ray, name: str) -> None:
    from ray import serve

    ray_connect(local_ray)
    serve.delete(name)


RAY_TEST_APP = {"app_name": "moderator-tests", "replica_batch_size": 16, "num_cpus": 0.5}


@pytest.fixture(params=["onnx", "ray", "triton", "triton-http"])
def backend_settings(request) -> dict:
    """Encoder settings of each backend serving the tiny model (the shared backend suite)."""
    if request.param == "onnx":
        return {"backend": "onnx", "model_dir": str(TINY_MODEL)}
    if request.param == "ray":
        ray = request.getfixturevalue("local_ray")
        return {"backend": "ray", "model_dir": str(TINY_MODEL), "ray": {"address": ray.address, **RAY_TEST_APP}}
    triton = request.getfixturevalue("local_triton")
    if request.param == "triton-http":
        return {"backend": "triton", "model_dir": str(TINY_MODEL), "triton": {"url": triton.http_url, "protocol": "http"}}
    return {"backend": "triton", "model_dir": str(TINY_MODEL), "triton": {"url": triton.grpc_url}}


class SteadyProducer:
    """Produces ``make(i) -> (id, key, value, partition)`` every ``interval`` seconds on a thread
    until stopped; ``sent`` lists the ids sent, in order (load during a test)."""

    def __init__(self, bootstrap: str, topic: str, make, interval: float = 0.02) -> None:
        import threading

        self.bootstrap, self.topic, self.make, self.interval = bootstrap, topic, make, interval
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2)
        i = 0
        while not self._stop.is_set():
            mid, key, value, partition = self.make(i)
            producer.send(self.topic, key=key, value=value, partition=partition, headers=[("moderation-id", mid.encode())])
            self.sent.append(mid)
            i += 1
            time.sleep(self.interval)
        producer.flush()
        producer.close()
