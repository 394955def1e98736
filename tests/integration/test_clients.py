"""The consumer factory's work-around for kafka-python 3.0's lost rebalance (stream/clients.py)."""

from __future__ import annotations

import pytest

from moderator.settings import KafkaSettings
from moderator.stream.clients import make_consumer

pytestmark = [pytest.mark.integration]


def test_a_join_in_flight_counts_as_a_reason_to_rejoin(broker):
    consumer = make_consumer(
        KafkaSettings(bootstrap_servers=broker.bootstrap, input_topics=["x"], verdict_topic="v", dead_letter_topic="d", group_id="g-clients"), 8
    )
    try:
        coordinator = consumer._coordinator  # the kafka-python 3 internals the work-around relies on
        assert coordinator._join_task is None and coordinator.need_rejoin() is False  # not subscribed: nothing to join
        coordinator._join_task = object()  # a JoinGroup/SyncGroup round trip a timed-out poll left in flight
        assert coordinator.need_rejoin() is True
        coordinator._join_task = None
        assert coordinator.need_rejoin() is False
    finally:
        consumer.close(autocommit=False)
