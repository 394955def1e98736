"""Production Kafka (issue: production Kafka): TLS with client certificates and SASL_SSL/SCRAM on
a real broker's own listeners, secrets kept secret, topics never created by reading them,
balanced output for keyless input, and one worker of three restarted without stopping the others."""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict

import pytest

from moderator.local.broker import LocalKafka, create_topics
from moderator.local.collect import OutputCollector
from moderator.local.service import free_port
from tests.integration.conftest import SteadyProducer, produce, small_jpegs, wait_until
from tests.integration.pki import make_pki

pytestmark = pytest.mark.integration

PASSWORD = "alice-s3cret-value"


def unsigned_jwt(subject: str) -> str:
    """A token the broker's development validator accepts (alg none, sub, iat, exp)."""
    import base64
    import json

    def part(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + 3600})}."


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    """A second broker: TLS listeners (mTLS, SASL_SSL with SCRAM), and topic auto-creation on,
    as a default-configured broker has it."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    kafka = LocalKafka(port=free_port(4), data_dir=tmp_path_factory.mktemp("kafka-secure"), tls_dir=pki.dir, auto_create=True)
    kafka.start()
    kafka.scram_user("alice", PASSWORD)
    kafka.pki = pki
    yield kafka
    kafka.stop()


def _topics(kafka: LocalKafka, name: str, partitions: int = 2):
    from tests.integration.conftest import Topics

    t = Topics(f"in-{name}", f"verdicts-{name}", f"dlq-{name}", f"group-{name}", partitions)
    create_topics(kafka.bootstrap, {t.input: partitions, t.verdicts: partitions, t.dead_letters: 1})
    return t


FAST_FAIL = {"request_timeout_ms": 5000, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def test_end_to_end_through_mutual_tls_sasl_ssl_scram_and_oauthbearer(secure_broker, service, tmp_path):
    pki = secure_broker.pki
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")  # as a Kubernetes secret mount may end it
    token_file = tmp_path / "token"
    token_file.write_text(unsigned_jwt("moderator"))
    listeners = {
        "mtls": {
            "bootstrap_servers": secure_broker.ssl_bootstrap,
            "security_protocol": "SSL",
            "ssl_cafile": str(pki.ca),
            "ssl_certfile": str(pki.client_cert),
            "ssl_keyfile": str(pki.client_key),
        },
        "scram": {
            "bootstrap_servers": secure_broker.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pki.ca),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "alice",
            "sasl_plain_password_file": str(password_file),
        },
        "scram256": {
            "bootstrap_servers": secure_broker.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pki.ca),
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "alice",
            "sasl_plain_password": PASSWORD,
        },
        # OAUTHBEARER against the broker's built-in validator of unsigned tokens (kafka.sh: tests only).
        "oauth-file": {
            "bootstrap_servers": secure_broker.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pki.ca),
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_file": str(token_file),
        },
        "oauth-command": {
            "bootstrap_servers": secure_broker.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pki.ca),
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_command": f"cat {token_file}",
        },
    }
    for name, security in listeners.items():
        t = _topics(secure_broker, name)
        out = OutputCollector(secure_broker.bootstrap, t.verdicts, t.dead_letters).start()
        try:
            svc = service(
                t, kafka={**security, "input_topics": [t.input], "verdict_topic": t.verdicts, "dead_letter_topic": t.dead_letters, "group_id": t.group}
            )
            batch = list(small_jpegs(f"{name}-", 6))
            produce(secure_broker.bootstrap, t.input, batch)
            assert out.wait_for({mid for mid, *_ in batch}, timeout=120), svc.log_tail()
            assert all(o.kind == "verdict" for o in out.snapshot())
            assert svc.terminate() == 0
            log = svc.log_path.read_text()
            assert PASSWORD not in log, "the password never reaches the log"
        finally:
            out.stop()


def test_a_wrong_password_or_an_untrusted_broker_keeps_the_service_waiting_not_crashing(secure_broker, service, tmp_path):
    pki = secure_broker.pki
    cases = {
        "wrong-password": (
            {
                "bootstrap_servers": secure_broker.sasl_ssl_bootstrap,
                "security_protocol": "SASL_SSL",
                "ssl_cafile": str(pki.ca),
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "alice",
                "sasl_plain_password": "not-" + PASSWORD,
            },
            "invalid credentials",
        ),
        "untrusted-broker": (
            {
                "bootstrap_servers": secure_broker.ssl_bootstrap,
                "security_protocol": "SSL",
                "ssl_cafile": str(pki.stranger_ca),
                "ssl_certfile": str(pki.client_cert),
                "ssl_keyfile": str(pki.client_key),
            },
            "certificate verify failed",
        ),
    }
    for name, (security, expected) in cases.items():
        t = _topics(secure_broker, name)
        svc = service(
            t,
            wait_ready=False,
            kafka={
                **security,
                **FAST_FAIL,
                "input_topics": [t.input],
                "verdict_topic": t.verdicts,
                "dead_letter_topic": t.dead_letters,
                "group_id": t.group,
                "retry_initial_ms": 200,
                "retry_max_ms": 1000,
            },
        )
        wait_until(lambda: svc.log_path.read_text().count("cannot connect to Kafka") >= 1, 90, f"{name}: a failed attempt logged")  # noqa: B023 (called here)
        assert svc.proc.poll() is None, "the service waits; it does not exit into a crash loop"
        # On a loaded machine an attempt can time out before the handshake says why; the next one does.
        wait_until(lambda: expected in svc.readiness().get("notes", {}).get("broker", ""), 90, f"{name}: the cause in /readyz")  # noqa: B023
        status, body = svc.get("/readyz")
        assert status == 503, body
        lines = [line for line in svc.log_path.read_text().splitlines() if "cannot connect to Kafka" in line]
        assert all(expected in line or "KafkaTimeoutError" in line for line in lines) and any(expected in line for line in lines), lines[:3]
        log = svc.log_path.read_text()
        assert "Traceback" not in log and "kafka.net" not in log, "one clear line per attempt, not the client's own noise"
        assert PASSWORD not in log
        assert svc.terminate(timeout=60) == 0


def test_missing_topics_keep_the_service_not_ready_and_are_never_created(secure_broker, service):
    """On a broker that creates topics on first use, a misspelt input topic is not created: the
    service says which topic is missing and waits for it."""
    from kafka import KafkaAdminClient

    t = _topics(secure_broker, "missing")
    missing = t.input + "-typo"
    svc = service(
        t,
        wait_ready=False,
        kafka={
            "bootstrap_servers": secure_broker.bootstrap,
            "input_topics": [missing],
            "verdict_topic": t.verdicts,
            "dead_letter_topic": t.dead_letters,
            "group_id": t.group,
            "retry_initial_ms": 200,
            "retry_max_ms": 1000,
        },
    )
    wait_until(lambda: svc.log_path.read_text().count("missing topics") >= 2, 60, "the missing topic to be reported")
    body = svc.readiness()
    assert body["ready"] is False and body["checks"]["topics"] is False
    assert f"{missing}: does not exist" in body["notes"]["topics"]
    admin = KafkaAdminClient(bootstrap_servers=secure_broker.bootstrap)
    try:
        assert missing not in admin.list_topics(), "the service created nothing"
        create_topics(secure_broker.bootstrap, {missing: 2})
    finally:
        admin.close()
    svc.wait_ready(60)
    out = OutputCollector(secure_broker.bootstrap, t.verdicts, t.dead_letters).start()
    try:
        batch = list(small_jpegs("typo-", 4))
        produce(secure_broker.bootstrap, missing, batch)
        assert out.wait_for({mid for mid, *_ in batch}, timeout=60), svc.log_tail()
    finally:
        out.stop()
    assert svc.terminate() == 0


def _produce_keyless(bootstrap: str, topic: str, prefix: str, n: int, partitions: int) -> list[str]:
    """Keyless images spread evenly over the input's partitions (the input's balance is not what
    is measured)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    ids = []
    for i, (mid, _key, value, headers) in enumerate(small_jpegs(prefix, n)):
        producer.send(topic, value=value, headers=headers, partition=i % partitions)
        ids.append(mid)
    producer.flush()
    producer.close()
    return ids


def test_keyless_output_is_balanced(broker, service, collector):
    import uuid

    from tests.integration.conftest import Topics

    shares = {}
    for verdict_partitions in (6, 4):
        suffix = uuid.uuid4().hex[:6]
        t = Topics(f"in-bal-{suffix}", f"verdicts-bal-{suffix}", f"dlq-bal-{suffix}", f"group-bal-{suffix}", 6)
        create_topics(broker.bootstrap, {t.input: 6, t.verdicts: verdict_partitions, t.dead_letters: 1})
        out = collector(t)
        svc = service(t)
        ids = _produce_keyless(broker.bootstrap, t.input, f"bal{verdict_partitions}-", 600, 6)
        assert out.wait_for(set(ids), timeout=180), svc.log_tail()
        verdicts = [o for o in out.snapshot() if o.kind == "verdict"]
        counts = Counter(o.partition for o in verdicts)
        share = max(counts.values()) / statistics.mean(counts.values())
        shares[verdict_partitions] = (share, dict(sorted(counts.items())))
        if verdict_partitions == 6:
            assert all(o.partition == o.json()["source"]["partition"] for o in verdicts), "same partition counts: same partition"
        assert len(counts) == verdict_partitions
        assert svc.terminate() == 0
    print(
        f"\n[kafka] keyless verdict balance, max/mean share: 6 -> 6 partitions {shares[6][0]:.3f} {shares[6][1]}; "
        f"6 -> 4 partitions {shares[4][0]:.3f} {shares[4][1]}"
    )
    assert shares[4][0] <= 1.2, "keyed by message id"
    assert shares[6][0] == 1.0, "by the input's partition: as balanced as the input"


def test_restarting_one_of_three_workers_does_not_stop_the_others(broker, topics, service, collector):
    t = topics(6)
    out = collector(t)
    common = {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 1_000}
    workers = [service(t, kafka={**common, "group_instance_id": f"worker-{i}", "client_id": f"worker-{i}"}) for i in range(3)]
    images = [value for _, _, value, _ in small_jpegs("roll", 25)]
    producer = SteadyProducer(broker.bootstrap, t.input, lambda i: (f"roll-{i}", None, images[i % 25], i % 6))
    sent = producer.sent
    with producer:
        wait_until(lambda: len(out.snapshot()) >= 150, 120, "verdicts from three workers")
        restarted_at = time.monotonic()
        assert workers[1].terminate() == 0
        down_for = time.monotonic() - restarted_at
        workers[1] = service(t, kafka={**common, "group_instance_id": "worker-1", "client_id": "worker-1"})
        back_at = time.monotonic()
        wait_until(lambda: len(out.snapshot()) >= len(sent) * 0.9 and time.monotonic() > back_at + 5, 120, "traffic after the restart")
    assert out.wait_for(set(sent), timeout=120), "nothing lost"
    arrivals = defaultdict(list)
    seen = Counter(o.id for o in out.snapshot() if o.kind == "verdict")
    for o in out.snapshot():
        arrivals[o.json()["source"]["partition"]].append(o.received_at)
    window = (restarted_at, back_at)
    gaps = {}
    for p, times in arrivals.items():
        times = sorted(times)
        inside = [b - a for a, b in zip(times, times[1:]) if window[0] - 1 <= a <= window[1] + 1]
        gaps[p] = max(inside, default=0.0)
    down = back_at - restarted_at
    threshold = max(0.6, 0.4 * down)
    flowing = [p for p, g in gaps.items() if g < threshold]
    print(
        f"\n[kafka] one of three workers restarted (down {down:.1f}s, drain {down_for:.1f}s); "
        f"largest verdict gap per partition meanwhile: { {p: round(g, 2) for p, g in sorted(gaps.items())} }"
    )
    assert len(flowing) == 4, "the two workers that stayed kept their four partitions flowing throughout; only the restarted one's paused"
    duplicates = [mid for mid, n in seen.items() if n > 1]
    dup_partitions = {int(mid.split("-")[1]) % 6 for mid in duplicates}
    assert not (dup_partitions & set(flowing)), "duplicates only on the restarted worker's partitions"
    for w in workers:
        assert w.terminate() == 0


def test_topics_create_and_check(secure_broker, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {
        "MODERATOR_KAFKA__BOOTSTRAP_SERVERS": secure_broker.bootstrap,
        "MODERATOR_KAFKA__INPUT_TOPICS": "cli-images",
        "MODERATOR_KAFKA__VERDICT_TOPIC": "cli-verdicts",
        "MODERATOR_KAFKA__DEAD_LETTER_TOPIC": "cli-dlq",
    }

    def moderator(*args):
        import os

        return subprocess.run(
            [sys.executable, "-m", "moderator", "topics", *args], cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
        )

    check = moderator("check")
    assert check.returncode == 1 and "cli-images (input): MISSING" in check.stdout
    create = moderator("create", "--partitions", "4")
    assert create.returncode == 0, create.stderr
    assert "cli-dlq: creating (dead letters): 4 partitions, replication 1" in create.stdout
    assert "max.message.bytes=20971520" in create.stdout and "retention.ms=2592000000" in create.stdout
    check = moderator("check", "--partitions", "4")
    assert check.returncode == 0 and check.stdout.count(": ok:") == 3, check.stdout
    again = moderator("create")
    assert again.stdout.count("left alone") == 3
