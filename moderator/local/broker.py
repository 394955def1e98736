"""Drive ``deploy/local/kafka.sh`` (a real Apache Kafka broker, KRaft, on 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from moderator import bundled
from moderator.errors import StartupError


def broker_script() -> Path:
    script = bundled.kafka_script()
    if not script.is_file():
        raise StartupError(f"{script} not found: reinstall the package, or run from a clone of the repository")
    return script


class LocalKafka:
    """A broker on ``127.0.0.1:port`` with its data under ``data_dir`` (kept across restarts)."""

    def __init__(self, port: int = 9092, data_dir: Path | None = None, tls_dir: Path | None = None, auto_create: bool = False) -> None:
        """``tls_dir`` (ca.pem, broker.pem) adds an SSL listener requiring client certificates on
        ``port + 2`` and a SASL_SSL (SCRAM) one on ``port + 3``; ``auto_create`` makes the broker
        create topics on first use, as a default-configured broker does."""
        self.port = port
        self.data_dir = data_dir
        self.tls_dir = tls_dir
        self.auto_create = auto_create
        self.bootstrap = f"127.0.0.1:{port}"
        self.ssl_bootstrap = f"127.0.0.1:{port + 2}"
        self.sasl_ssl_bootstrap = f"127.0.0.1:{port + 3}"

    def _run(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, KAFKA_PORT=str(self.port), KAFKA_AUTO_CREATE="true" if self.auto_create else "false")
        env.setdefault("KAFKA_CACHE_DIR", str(bundled.work_dir() / "kafka"))  # jars and data outside an installed package
        if self.data_dir is not None:
            env["KAFKA_DATA_DIR"] = str(self.data_dir)
        if self.tls_dir is not None:
            env["KAFKA_TLS_DIR"] = str(self.tls_dir)
        proc = subprocess.run(["bash", str(broker_script()), command, *args], env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise StartupError(f"kafka.sh {command} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc

    def running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def scram_user(self, name: str, password: str) -> None:
        """A SCRAM-SHA-256/512 user, made with the broker's own kafka-configs tool."""
        self._run("scram-user", name, password)

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
