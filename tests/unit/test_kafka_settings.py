"""Kafka security settings (issue: production Kafka): validated mechanisms, secrets that never
show, secrets from files, OAUTHBEARER tokens, and what the clients are given."""

from __future__ import annotations

import logging

import pytest

from moderator.errors import SettingsError
from moderator.settings import load_settings
from moderator.stream.clients import consumer_config, producer_config, security_config
from moderator.stream.oauth import read_token, token_provider

SECRET = "s3cret-Value-42"


def scram(**extra):
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", **extra}


@pytest.mark.parametrize(
    "kafka, message",
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism needs security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"}, "needs sasl_plain_username and sasl_plain_password"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "exactly one of sasl_oauth_token_file"),
        ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"}, "both ssl_certfile and ssl_keyfile"),
        (scram(sasl_plain_password="a", sasl_plain_password_file="/p"), "not both"),
    ],
)
def test_security_settings_are_validated(kafka, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(kafka=kafka)


def test_a_password_never_shows(caplog):
    s = load_settings(kafka=scram(sasl_plain_password=SECRET, ssl_password=SECRET))
    for shown in (repr(s), str(s), s.model_dump_json(), str(s.model_dump()), str(s.kafka)):
        assert SECRET not in shown
    with pytest.raises(SettingsError) as err:
        load_settings(kafka=scram(sasl_plain_password=SECRET, session_timeout_ms=1))
    assert SECRET not in str(err.value), "a validation error about another field does not echo the password"
    assert security_config(s.kafka)["sasl_plain_password"] == SECRET, "the client gets the value"


def test_secrets_from_files_are_read_when_connecting(tmp_path):
    password = tmp_path / "password"
    password.write_text(SECRET + "\n")
    s = load_settings(kafka=scram(sasl_plain_password_file=str(password)))
    assert consumer_config(s.kafka, 8)["sasl_plain_password"] == SECRET
    password.write_text("rotated\n")
    assert producer_config(s.kafka)["sasl_plain_password"] == "rotated", "a rotated secret is used at the next connection"
    password.unlink()
    with pytest.raises(SettingsError, match="sasl_plain_password_file: cannot read"):
        security_config(s.kafka)


def test_mutual_tls_options_reach_the_clients(tmp_path):
    key_password = tmp_path / "key-password"
    key_password.write_text(SECRET)
    s = load_settings(
        kafka={
            "security_protocol": "SSL",
            "ssl_cafile": "/ca.pem",
            "ssl_certfile": "/c.pem",
            "ssl_keyfile": "/k.pem",
            "ssl_password_file": str(key_password),
            "ssl_check_hostname": False,
            "ssl_crlfile": "/crl.pem",
        }
    )
    cfg = security_config(s.kafka)
    assert cfg == {
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
        "ssl_crlfile": "/crl.pem",
        "ssl_password": SECRET,
    }


def test_clients_never_create_topics_and_use_the_rebalancing_and_fetch_settings():
    s = load_settings(
        kafka={
            "group_instance_id": "pod-0",
            "client_rack": "zone-a",
            "isolation_level": "read_committed",
            "fetch_min_bytes": 1024,
            "fetch_max_wait_ms": 250,
            "compression_type": "zstd",
        }
    )
    c, p = consumer_config(s.kafka, 8), producer_config(s.kafka)
    assert c["allow_auto_create_topics"] is False and p["allow_auto_create_topics"] is False
    assert c["partition_assignment_strategy"][0].name == "cooperative-sticky"
    assert (c["group_instance_id"], c["client_rack"], c["isolation_level"], c["fetch_min_bytes"], c["fetch_max_wait_ms"]) == (
        "pod-0",
        "zone-a",
        "read_committed",
        1024,
        250,
    )
    assert p["compression_type"] == "zstd"
    assert producer_config(load_settings(kafka={"compression_type": "none"}).kafka)["compression_type"] is None
    assert consumer_config(load_settings(kafka={"partition_assignment": "range"}).kafka, 8)["partition_assignment_strategy"][0].name == "range"


def test_oauth_tokens_from_a_file_or_a_command(tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    assert read_token(token, None) == "eyJhbGciOiJub25lIn0.e30."
    token.write_text("fresh-token")
    assert token_provider(token, None).token() == "fresh-token", "re-read at every authentication"
    assert read_token(None, "printf 'from-command'") == "from-command"
    with pytest.raises(SettingsError, match="exited 3") as err:
        read_token(None, "sh -c 'echo nope >&2; exit 3'")
    assert "nope" in str(err.value)
    token.write_text("")
    with pytest.raises(SettingsError, match="empty"):
        read_token(token, None)
    token.write_text("x" * 70_000)
    with pytest.raises(SettingsError, match="over 64 KiB") as err:
        read_token(token, None)
    assert "xxxx" not in str(err.value), "a token is never echoed"
    s = load_settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_file": str(token)})
    assert security_config(s.kafka)["sasl_oauth_token_provider"] is not None


def test_secrets_are_not_shipped_to_ray_replicas(tmp_path, caplog):
    pytest.importorskip("ray")
    from moderator.serving.ray_app import _portable_settings

    s = load_settings(kafka=scram(sasl_plain_password=SECRET))
    with caplog.at_level(logging.WARNING):
        shipped = _portable_settings(s)
    assert "sasl_plain_password" not in shipped["kafka"] and SECRET not in str(shipped)
    assert "MODERATOR_KAFKA__SASL_PLAIN_PASSWORD" in caplog.text, "the operator is told how replicas get it"
    password = tmp_path / "p"
    password.write_text(SECRET)
    shipped = _portable_settings(load_settings(kafka=scram(sasl_plain_password_file=str(password))))
    assert shipped["kafka"]["sasl_plain_password_file"] == str(password)


def test_outputs_go_to_the_input_partition_or_by_message_id():
    from moderator.stream.outputs import Outputs, verdict_key
    from moderator.wire.input import Source

    class Item:
        def __init__(self, partition, key=None):
            self.source, self.key = Source("in", partition, 0, None), key

    s = load_settings()
    same = Outputs(s.kafka, None, None, None, None, partitions={"in": 6, s.kafka.verdict_topic: 6, s.kafka.dead_letter_topic: 1})
    assert [same.partition_for(Item(p), s.kafka.verdict_topic) for p in range(6)] == list(range(6))
    assert same.partition_for(Item(3), s.kafka.dead_letter_topic, "m") == 0
    assert same.partition_for(Item(7), s.kafka.verdict_topic) is None, (
        "an input partition added since start, past the verdict topic's: by key, never an unknown partition (a send that fails forever)"
    )
    other = Outputs(s.kafka, None, None, None, None, partitions={"in": 6, s.kafka.verdict_topic: 4, s.kafka.dead_letter_topic: 4})
    assert other.partition_for(Item(5), s.kafka.verdict_topic) is None, "by key"
    spread = {other.partition_for(Item(0), s.kafka.dead_letter_topic, f"id-{i}") for i in range(200)}
    assert spread == {0, 1, 2, 3}, "keyless dead letters spread by message id"
    assert other.partition_for(Item(0, key=b"k"), s.kafka.dead_letter_topic, "id") is None, "a keyed dead letter keeps its key's partition"
    assert verdict_key(Item(0), "id-7") == b"id-7" and verdict_key(Item(0, b"k"), "id-7") == b"k"


def test_recommended_topics():
    from moderator.stream.topics import recommend

    s = load_settings(kafka={"input_topics": "a,b"})
    plan = {r.topic: r for r in recommend(s.kafka, 12, brokers=5)}
    assert set(plan) == {"a", "b", s.kafka.verdict_topic, s.kafka.dead_letter_topic}
    assert all(r.partitions == 12 and r.replication_factor == 3 and r.configs["min.insync.replicas"] == "2" for r in plan.values())
    assert plan[s.kafka.dead_letter_topic].configs["max.message.bytes"] == str(s.kafka.max_request_size)
    single = recommend(s.kafka, 2, brokers=1)
    assert all(r.replication_factor == 1 and r.configs["min.insync.replicas"] == "1" for r in single)
