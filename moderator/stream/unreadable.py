"""Records the Kafka client cannot parse: find them, so the worker can skip them by offset.

kafka-python raises from ``poll()`` when a fetched record batch cannot be parsed (a CRC failure,
a codec it cannot run, a header key that is not UTF-8, a malformed record). It neither says which
partition and offset failed nor moves past them, and (3.0.12) its fetcher then spins inside
``poll()`` for good on the exhausted record iterator, so one such record stalls its partition and
ignores SIGTERM. :func:`locate` reads the exception's traceback, where kafka-python's own frames
still hold the partition, the batch and, for a bad record, its offset; the worker dead-letters
the unreadable offsets and seeks past them (which also drops the stuck iterator).

Skipping works at batch granularity: kafka-python re-parses a batch from its first record on
every fetch, so once one record of a batch cannot be read, neither can any record after it in
that batch. The skipped range runs from the consumer's position to the batch's last offset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moderator.stream.checkpoint import Checkpoint
    from moderator.stream.outputs import Outputs
    from moderator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Frames of kafka-python's record parsing; an exception that passed through none of them is
# not about a record (a broker or network error) and is never a reason to skip anything.
_RECORD_MODULES = ("kafka/record/", "kafka/codec.py")
_UNPACK = "_unpack_records"
_PARSE = "_parse_fetched_data"
_READ_RECORD = "_read_msg"
_MAX_CHAIN = 8


@dataclass(frozen=True)
class UnreadableRange:
    """Offsets ``first..last`` of one partition that the client cannot return."""

    topic: str
    partition: int
    first: int
    last: int
    error: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def locate(exc: BaseException, position: Any) -> UnreadableRange | None:
    """Where the record error ``exc`` (raised by ``consumer.poll``) happened, or None when it is
    not a record-parsing error. ``position(tp)`` returns the consumer's position of a partition.
    """
    frames = _frames(exc)
    if not any(_is_record_frame(f) for f in frames):
        return None
    unpack = next((f for f in frames if f.f_code.co_name == _UNPACK), None)
    parse = next((f for f in frames if f.f_code.co_name == _PARSE), None)
    if unpack is not None:
        records = unpack.f_locals.get("self")
        tp = getattr(records, "topic_partition", None)
        batch = unpack.f_locals.get("batch")
    elif parse is not None:
        tp, batch = parse.f_locals.get("tp"), None
    else:
        return None
    if tp is None:
        return None
    first = int(position(tp))
    last = first
    batch_last = getattr(batch, "last_offset", None) if batch is not None else None
    if isinstance(batch_last, int) and batch_last >= first:
        last = batch_last
    return UnreadableRange(tp.topic, tp.partition, first, last, _describe(exc))


def skip_unreadable(exc: BaseException, consumer, checkpoint: Checkpoint, outputs: Outputs, metrics: Metrics) -> bool:
    """Dead-letter and seek past the records ``exc`` is about; False if it is not a record error.

    The skipped range is tracked like any offset (by its last offset), so it is committed only
    once its dead letter is acknowledged.
    """
    from kafka.structs import TopicPartition

    skipped = locate(exc, consumer.position)
    if skipped is None:
        return False
    metrics.unreadable_records.inc(skipped.count)
    token = checkpoint.track(skipped.topic, skipped.partition, skipped.last)
    if token is None:
        return True  # revoked meanwhile: the partition's new owner meets the record and skips it
    outputs.unreadable(token, skipped)
    try:
        consumer.seek(TopicPartition(skipped.topic, skipped.partition), skipped.last + 1)
    except Exception as seek_error:  # revoked between track and seek: the dead letter stands, the new owner skips too
        log.warning("could not seek %s[%d] past unreadable offsets: %s", skipped.topic, skipped.partition, seek_error)
    return True


def _frames(exc: BaseException) -> list[FrameType]:
    """Every frame in the tracebacks of ``exc`` and of the exceptions it was raised from or
    during (kafka-python turns a UnicodeDecodeError into a CorruptRecordError)."""
    out: list[FrameType] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            out.append(tb.tb_frame)
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return out


def _is_record_frame(frame: FrameType) -> bool:
    name = frame.f_code.co_filename.replace("\\", "/")
    return frame.f_code.co_name in (_UNPACK, _READ_RECORD) or any(m in name for m in _RECORD_MODULES)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in str(exc):
        text += f" (from {type(cause).__name__}: {cause})"
    return text
