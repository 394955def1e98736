"""Why a Kafka client could not connect, in one line.

kafka-python reports a failed bootstrap as ``KafkaTimeoutError: Unable to bootstrap`` after its
own retries, and logs the cause (a TLS handshake failure, a SASL authentication failure) many
times on its connection loggers. While the service connects, :func:`quiet_connection_errors`
keeps those lines out of the log and remembers the last cause, so the service logs one line per
attempt that says what is wrong ("certificate verify failed", "invalid credentials").
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading

# kafka-python 3 logs connection failures on these; 2.x on kafka.conn and kafka.client_async.
# (A logger's filters do not apply to its children's records: each is named.)
CONNECTION_LOGGERS = (
    "kafka.net.manager",
    "kafka.net.connection",
    "kafka.net.transport",
    "kafka.net.selector",
    "kafka.net.sasl.scram",
    "kafka.net.sasl.plain",
    "kafka.net.sasl.oauth",
    "kafka.conn",
    "kafka.client_async",
)
_CAUSE = re.compile(
    r"(SaslAuthenticationFailedError: .*?|Handshake failed: .*?|CERTIFICATE_VERIFY_FAILED.*?|"
    r"Connection refused.*?|Authentication failed.*?)(?: \(backoff [\d.]+ secs\))?$"
)


class _LastCause(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.cause: str | None = None
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            try:
                message = record.getMessage()
            except Exception:
                return False
            m = _CAUSE.search(message)
            if m:
                with self.lock:
                    self.cause = m.group(1)[:300]
        return False  # kept out of the log while connecting: the service logs the cause itself


@contextlib.contextmanager
def quiet_connection_errors():
    """Within the block, kafka-python's connection failures are not logged; yields a function
    returning the last cause seen (or None)."""
    last = _LastCause()
    loggers = [logging.getLogger(name) for name in CONNECTION_LOGGERS]
    for lg in loggers:
        lg.addFilter(last)
    try:
        yield lambda: last.cause
    finally:
        for lg in loggers:
            lg.removeFilter(last)
