"""The consumer-group rebalance listener.

kafka-python 3 calls it on its I/O thread. It takes plain callbacks (revoked, lost, assigned),
each given ``(topic, partition)`` pairs, and ``on_error``: an exception inside a callback would
be logged and swallowed by kafka-python; here it is handed to ``on_error`` (the worker records
it as fatal, which stops it, committing only what was acknowledged, with exit code 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from moderator.stream.exceptions import RebalanceError

log = logging.getLogger(__name__)

Partitions = list[tuple[str, int]]


def make_listener(
    on_revoked: Callable[[Partitions], None],
    on_lost: Callable[[Partitions], None],
    on_assigned: Callable[[Partitions], None],
    on_error: Callable[[BaseException], None],
):
    from kafka import ConsumerRebalanceListener

    def guarded(what: str, fn: Callable[[Partitions], None], partitions: Any) -> None:
        try:
            fn([(tp.topic, tp.partition) for tp in partitions])
        except Exception as exc:
            log.exception("error while handling %s partitions", what)
            on_error(RebalanceError(f"{what} partitions: {exc}"))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked) -> None:
            guarded("revoked", on_revoked, revoked)

        def on_partitions_lost(self, lost) -> None:
            # Evicted (session expired during a broker outage, say): a commit would be refused.
            guarded("lost", on_lost, lost)

        def on_partitions_assigned(self, assigned) -> None:
            guarded("assigned", on_assigned, assigned)

    return Listener()
