"""Kafka client factories: settings in, configured clients out. Nothing connects until called."""

from __future__ import annotations

import logging
from typing import Any

from moderator.settings import KafkaSettings
from moderator.stream.oauth import token_provider

log = logging.getLogger(__name__)


def security_config(s: KafkaSettings) -> dict[str, Any]:
    """Client keyword arguments for TLS and SASL, shared by consumer, producer and admin. Secrets
    are read here (from their setting or their file) and go only to the client.

    Raises:
        SettingsError: a secret file cannot be read.
    """
    out: dict[str, Any] = {"security_protocol": s.security_protocol}
    if s.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_check_hostname"] = s.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
            if getattr(s, key) is not None:
                out[key] = str(getattr(s, key))
        password = s.secret("ssl_password")
        if password is not None:
            out["ssl_password"] = password
    if s.sasl_mechanism is not None:
        out["sasl_mechanism"] = s.sasl_mechanism
        if s.sasl_mechanism == "OAUTHBEARER":
            out["sasl_oauth_token_provider"] = token_provider(s.sasl_oauth_token_file, s.sasl_oauth_token_command)
        else:
            out["sasl_plain_username"] = s.sasl_plain_username
            out["sasl_plain_password"] = s.secret("sasl_plain_password")
    return out


def consumer_config(s: KafkaSettings, max_poll_records: int) -> dict[str, Any]:
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignor = {"cooperative-sticky": CooperativeStickyAssignor, "range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[
        s.partition_assignment
    ]
    return {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "group_id": s.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": s.auto_offset_reset,
        "session_timeout_ms": s.session_timeout_ms,
        "heartbeat_interval_ms": s.heartbeat_interval_ms,
        "max_poll_interval_ms": s.max_poll_interval_ms,
        "max_poll_records": max_poll_records,
        "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
        "fetch_max_bytes": s.fetch_max_bytes,
        "request_timeout_ms": max(s.request_timeout_ms, s.session_timeout_ms + 5_000),
        "fetch_min_bytes": s.fetch_min_bytes,
        "fetch_max_wait_ms": s.fetch_max_wait_ms,
        "isolation_level": s.isolation_level,
        "client_rack": s.client_rack or "",
        "group_instance_id": s.group_instance_id,
        "partition_assignment_strategy": (assignor,),
        # Never create a topic by reading it: a misspelt input topic must be an error, not an empty topic.
        "allow_auto_create_topics": False,
        **security_config(s),
    }


def producer_config(s: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": f"{s.client_id}-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": s.linger_ms,
        "delivery_timeout_ms": s.delivery_timeout_ms,
        "request_timeout_ms": s.request_timeout_ms,
        "max_request_size": s.max_request_size,
        "max_block_ms": 60_000,
        "compression_type": None if s.compression_type == "none" else s.compression_type,
        "allow_auto_create_topics": False,
        **security_config(s),
    }


def kafka_offsets(offsets: dict[tuple[str, int], int]) -> dict:
    """``{(topic, partition): next offset}`` as kafka-python's commit argument."""
    from kafka.structs import OffsetAndMetadata, TopicPartition

    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


def make_consumer(s: KafkaSettings, max_poll_records: int):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**consumer_config(s, max_poll_records))
    finish_interrupted_joins(consumer)
    return consumer


def finish_interrupted_joins(consumer) -> bool:
    """Work around a lost rebalance in kafka-python 3.0 (seen with 3.0.12).

    When ``poll(timeout_ms)`` expires while a JoinGroup/SyncGroup round trip is in flight, the
    coordinator keeps the join task to await it on the next poll, but only re-enters the join
    loop if ``need_rejoin()``. A rebalance triggered by new topic metadata is not recorded in
    ``rejoin_needed``: the leader's assignment snapshot catches up with the metadata inside the
    in-flight join, ``need_rejoin()`` turns False, the finished join is never applied and the
    member sits in the group with no partitions for good (reproduced about once in 17 starts on a
    loaded machine: "partitions assigned: none" and nothing after). Treating a join in flight as
    a reason to rejoin makes the next poll finish it (or send a fresh JoinGroup). Returns whether
    the work-around applies (kafka-python 2.x has no join task and no such bug).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "_join_task"):
        return False
    need_rejoin = coordinator.need_rejoin

    def need_rejoin_or_join_in_flight() -> bool:
        return coordinator._join_task is not None or need_rejoin()

    coordinator.need_rejoin = need_rejoin_or_join_in_flight
    return True


def producer_failed(producer) -> bool:
    """Whether a kafka-python producer is in its fatal state and will never send again.

    kafka-python 3.0.12's idempotent producer enters it on a broker "message too large" answer
    (its classifier returns FATAL for any non-retriable error of a non-transactional producer,
    although its comment says such errors only fail the batch). Other versions without the
    attribute report False.
    """
    manager = getattr(producer, "_transaction_manager", None)
    check = getattr(manager, "has_fatal_error", None)
    try:
        return bool(check()) if callable(check) else False
    except Exception:  # an internal API that moved must not break delivery
        return False


def make_producer(s: KafkaSettings):
    from kafka import KafkaProducer

    return KafkaProducer(**producer_config(s))


def topic_message_limits(s: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` as the broker reports it; topics (or a whole answer) it
    cannot give are left out, with a log line, and the caller falls back to ``max_request_size``.

    The outputs use it to send a dead letter that would not fit without its value up front:
    a record the broker refuses as too large puts kafka-python's producer in a fatal state
    (see :func:`producer_failed`).
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    key = "max.message.bytes"
    out: dict[str, int] = {}
    try:
        admin = make_admin(s)
        try:
            answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={key: None}) for t in topics], config_filter="all")
        finally:
            admin.close()
        described = answer.get("topic", {}) if isinstance(answer, dict) else {}
        for topic in topics:
            entry = described.get(topic, {})
            value = entry.get(key, {}).get("value") if isinstance(entry.get(key), dict) else entry.get("value")
            if value is not None:
                out[topic] = int(value)
    except Exception as exc:  # older clients answer in another shape, ACLs may refuse: not fatal
        log.warning(
            "cannot read max.message.bytes of %s (%s: %s); dead letters are sized by kafka.max_request_size only", ",".join(topics), type(exc).__name__, exc
        )
    return out


def make_admin(s: KafkaSettings):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=s.bootstrap_servers.split(","), client_id=f"{s.client_id}-admin", **security_config(s))
