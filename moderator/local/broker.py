"""Drive ``deploy/local/kafka.sh`` (a real Apache Kafka broker, KRaft, on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from moderator.errors import StartupError

REPO_ROOT = Path(__file__).resolve().parents[2]


def broker_script() -> Path:
    script = REPO_ROOT / "deploy" / "local" / "kafka.sh"
    if not script.is_file():
        raise StartupError(f"{script} not found: the local broker needs a clone of the repository (pip install -e .)")
    return script


class LocalKafka:
    """A broker on ``127.0.0.1:port`` with its data under ``data_dir`` (kept across restarts)."""

    def __init__(self, port: int = 9092, data_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir
        self.bootstrap = f"127.0.0.1:{port}"

    def _run(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, KAFKA_PORT=str(self.port))
        if self.data_dir is not None:
            env["KAFKA_DATA_DIR"] = str(self.data_dir)
        proc = subprocess.run(["bash", str(broker_script()), command], env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise StartupError(f"kafka.sh {command} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc

    def running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def restart(self) -> None:
        self._run("restart")

    def reset(self) -> None:
        self._run("reset")


def create_topics(bootstrap: str, topics: dict[str, int], timeout: float = 30.0) -> None:
    """Create topics (name -> partitions) and wait until their leaders are known."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moderator-local-admin")
    try:
        for name, parts in topics.items():
            try:
                admin.create_topics([NewTopic(name, parts, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + timeout
        for name, parts in topics.items():
            while len(probe.partitions_for_topic(name) or ()) < parts:
                if time.monotonic() > deadline:
                    raise StartupError(f"topic {name} did not get {parts} partitions within {timeout}s")
                probe._client.poll(timeout_ms=100)
                probe.topics()
    finally:
        probe.close()
