"""The topics the service uses: checked at start (never created by reading them), and the
recommended layout that ``moderator topics create`` makes and ``topics check`` compares.

Every client runs with ``allow_auto_create_topics=False``: on a broker that creates topics on
first use, a misspelt input topic would otherwise be created empty and the worker would sit
"ready" on it forever. At start the worker describes the input, verdict and dead-letter topics
and stays not ready (``/readyz`` names the missing ones) until all exist, retrying with backoff.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from moderator.retry import Backoff
from moderator.settings import KafkaSettings
from moderator.stream.clients import make_admin
from moderator.telemetry.health import Health

log = logging.getLogger(__name__)

UNKNOWN_TOPIC = 3
TOPIC_AUTHORIZATION_FAILED = 29
DAY_MS = 24 * 3600 * 1000


class TopicsUnavailable(Exception):
    """Some configured topics are missing (or may not be described)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{t}: {why}" for t, why in problems.items()))


def configured(s: KafkaSettings) -> dict[str, str]:
    """Each configured topic and its role."""
    out = {t: "input" for t in s.input_topics}
    out[s.verdict_topic] = "verdicts"
    out[s.dead_letter_topic] = "dead letters"
    return out


def describe(s: KafkaSettings) -> dict[str, int]:
    """Partition counts of every configured topic.

    Raises:
        TopicsUnavailable: naming each topic that is missing or may not be described.
        Exception: the broker cannot be reached (kafka-python's errors).
    """
    admin = make_admin(s)
    try:
        answer = admin.describe_topics(list(configured(s)))
    finally:
        admin.close()
    counts, problems = {}, {}
    for t in answer:
        name, code = t.get("name") or t.get("topic"), t.get("error_code", 0)
        if code == 0 and t.get("partitions"):
            counts[name] = len(t["partitions"])
        elif code == TOPIC_AUTHORIZATION_FAILED:
            problems[name] = "not authorised to describe it (ACLs)"
        else:
            problems[name] = "does not exist" if code in (0, UNKNOWN_TOPIC) else f"error code {code}"
    for name in configured(s):
        if name not in counts and name not in problems:
            problems[name] = "not in the broker's answer"
    if problems:
        raise TopicsUnavailable(problems)
    return counts


def wait_for_topics(s: KafkaSettings, health: Health, stop: threading.Event, backoff: Backoff) -> dict[str, int] | None:
    """Describe the configured topics until all exist; None if asked to stop first. Meanwhile
    readiness check ``topics`` fails with a note naming what is missing, and each attempt logs
    one line."""
    attempt = 0
    while not stop.is_set():
        try:
            counts = describe(s)
        except TopicsUnavailable as exc:
            why = f"missing topics: {exc}"
        except Exception as exc:  # the broker: unreachable, authentication, TLS
            why = f"cannot describe topics: {type(exc).__name__}: {exc}"
        else:
            health.set("topics", True)
            health.note("topics", None)
            return counts
        health.set("topics", False)
        health.note("topics", why)
        delay = backoff.delay(attempt)
        log.error("%s; the service never creates topics (create them, e.g. with `moderator topics create`); checking again in %.1fs", why, delay)
        attempt += 1
        stop.wait(delay)
    return None


@dataclass(frozen=True)
class Recommendation:
    topic: str
    role: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]
    why: str


def recommend(s: KafkaSettings, partitions: int, brokers: int) -> list[Recommendation]:
    """The recommended layout (docs/operations.md#topics)."""
    rf = min(3, max(1, brokers))
    isr = str(max(1, min(2, rf - 1)))
    common = {"min.insync.replicas": isr, "compression.type": "producer"}
    out = [
        Recommendation(
            t,
            "input",
            partitions,
            rf,
            {**common, "retention.ms": str(7 * DAY_MS)},
            "partitions bound the workers that can share the load: at least the most workers you will run",
        )
        for t in s.input_topics
    ]
    out.append(
        Recommendation(
            s.verdict_topic,
            "verdicts",
            partitions,
            rf,
            {**common, "retention.ms": str(7 * DAY_MS)},
            "as many partitions as the input: verdicts keep each input partition's order and balance",
        )
    )
    out.append(
        Recommendation(
            s.dead_letter_topic,
            "dead letters",
            partitions,
            rf,
            {**common, "retention.ms": str(30 * DAY_MS), "max.message.bytes": str(s.max_request_size)},
            "dead letters carry the original image: max.message.bytes fits kafka.max_request_size; kept 30 days for review and replay",
        )
    )
    return out
