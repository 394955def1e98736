"""The consumer-group rebalance listener.

kafka-python 3 calls it on its I/O thread. An exception inside a callback would be logged and
swallowed by kafka-python; here it is recorded as the worker's fatal error, which stops the
worker (committing only what was acknowledged) with exit code 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moderator.stream.exceptions import RebalanceError

if TYPE_CHECKING:
    from moderator.stream.worker import Worker

log = logging.getLogger(__name__)


def make_listener(worker: Worker):
    from kafka import ConsumerRebalanceListener

    def guarded(what: str, fn: Callable[[Any], None], partitions: Any) -> None:
        try:
            fn(partitions)
        except Exception as exc:
            log.exception("error while handling %s partitions", what)
            worker.fail(RebalanceError(f"{what} partitions: {exc}"))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked) -> None:
            guarded("revoked", worker.on_revoked, revoked)

        def on_partitions_lost(self, lost) -> None:
            # Evicted (session expired during a broker outage, say): a commit would be refused.
            guarded("lost", lambda tps: worker.on_revoked(tps, lost=True), lost)

        def on_partitions_assigned(self, assigned) -> None:
            guarded("assigned", worker.on_assigned, assigned)

    return Listener()
