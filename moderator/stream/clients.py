"""Kafka client factories: settings in, configured clients out. Nothing connects until called."""

from __future__ import annotations

from typing import Any

from moderator.settings import KafkaSettings


def consumer_config(s: KafkaSettings, max_poll_records: int) -> dict[str, Any]:
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
        **s.security(),
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
        **s.security(),
    }


def make_consumer(s: KafkaSettings, max_poll_records: int):
    from kafka import KafkaConsumer

    return KafkaConsumer(**consumer_config(s, max_poll_records))


def make_producer(s: KafkaSettings):
    from kafka import KafkaProducer

    return KafkaProducer(**producer_config(s))


def make_admin(s: KafkaSettings):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=s.bootstrap_servers.split(","), client_id=f"{s.client_id}-admin", **s.security())
