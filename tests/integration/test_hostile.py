"""Hostile input through the real broker, written by independent clients (librdkafka through
confluent-kafka, and kcat): poison messages between good ones, batches in every compression
codec Kafka allows, a header key that is not UTF-8 and a batch corrupted on the broker's disk.
Every message gets exactly one output, the partition keeps flowing, the worker never exits, and
SIGTERM ends it cleanly within its bound."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from collections import Counter

import pytest

from moderator.local.samples import COLOURS, Sample, draw, encode, hostile_messages
from tests.integration.conftest import produce, wait_until

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
GOOD = encode(draw("circle", COLOURS["green"], (64, 48)), "JPEG")


def good(mid: str) -> Sample:
    return Sample(mid, GOOD, [("moderation-id", mid.encode()), ("content-type", b"image/jpeg")], "verdict", "good", key=mid.encode())


def librdkafka_produce(bootstrap: str, topic: str, samples: list[Sample], compression: str) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "compression.type": compression, "linger.ms": 50, "enable.idempotence": True, "message.max.bytes": 10_000_000}
    )
    errors: list = []
    for s in samples:
        producer.produce(topic, value=s.value, key=s.key, headers=s.headers, partition=0, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(60) == 0 and not errors, errors


def test_poison_messages_in_every_compression_codec_get_one_output_each(broker, topics, service, collector):
    t = topics(1)
    expected: list[Sample] = []
    for codec in CODECS:
        batch = [good(f"{t.input}-{codec}-first")]
        batch += hostile_messages(f"{t.input}-{codec}")
        batch.append(good(f"{t.input}-{codec}-last"))
        librdkafka_produce(broker.bootstrap, t.input, batch, codec)
        expected += batch
    out = collector(t)
    svc = service(t)
    wait_until(lambda: len(out.snapshot()) >= len(expected), 180, f"{len(expected)} outputs")
    assert svc.proc.poll() is None, f"the worker exited\n{svc.log_tail()}"
    outputs = out.snapshot()
    assert len(outputs) == len(expected), f"{len(outputs)} outputs for {len(expected)} messages"
    by_id = Counter(o.id for o in outputs)
    for s in expected:
        if not s.id:  # no usable id: the output names the source coordinates
            continue
        matches = [o for o in outputs if o.id == s.id]
        assert len(matches) == 1, f"{s.description} ({s.id}): {len(matches)} outputs"
        o = matches[0]
        if s.expect == "verdict":
            assert o.kind == "verdict", f"{s.description}: {o.headers.get('moderator-error-message')}"
        else:
            assert o.kind == "dead_letter" and o.headers["moderator-error-reason"] == s.expect, (s.description, o.headers)
    coordinate_ids = [o for o in outputs if re.fullmatch(re.escape(t.input) + r"/0/\d+", o.id)]
    assert len(coordinate_ids) == sum(not s.id for s in expected), Counter(o.id for o in coordinate_ids)
    assert max(by_id.values()) == 1
    for codec in CODECS:
        assert f"{t.input}-{codec}-last" in by_id, f"the partition kept flowing after the {codec} poison"
    assert svc.terminate() == 0, svc.log_tail()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package) produces a header key that is not UTF-8")
def test_records_the_client_cannot_read_are_skipped_by_offset_and_dead_lettered(broker, topics, service, collector, tmp_path):
    t = topics(1)
    image_file = tmp_path / "image.jpg"  # kcat sends a named file as one message (stdin: one per line)
    image_file.write_bytes(GOOD)
    produce(broker.bootstrap, t.input, [(s.id, s.key, s.value, s.headers) for s in [good(f"{t.input}-a")]])
    # 1. A header key that is not UTF-8: the broker stores it, kafka-python cannot decode it.
    subprocess.run(
        ["kcat", "-P", "-b", broker.bootstrap, "-t", t.input, "-p", "0", "-k", "bad-header", "-H", b"\xff\xfe-not-utf8=v", str(image_file)],
        check=True,
        timeout=60,
    )
    produce(broker.bootstrap, t.input, [(s.id, s.key, s.value, s.headers) for s in [good(f"{t.input}-b")]])
    # 2. A batch whose bytes change on the broker's disk after it was written: its CRC fails.
    marker = b"CORRUPT-ME-" + t.input.encode()
    produce(broker.bootstrap, t.input, [("marker", b"marker", marker + GOOD, [("moderation-id", b"marker")])])
    produce(broker.bootstrap, t.input, [(s.id, s.key, s.value, s.headers) for s in [good(f"{t.input}-c")]])
    corrupt_on_disk(broker, t.input, marker)

    out = collector(t)
    svc = service(t, shutdown_timeout_s=20)
    ids = {f"{t.input}-a", f"{t.input}-b", f"{t.input}-c"}
    assert out.wait_for(ids, timeout=120), f"the partition stalled\n{svc.log_tail()}"
    wait_until(lambda: len(out.snapshot()) >= 5, 60, "five outputs")
    outputs = out.snapshot()
    dead = sorted((o for o in outputs if o.kind == "dead_letter"), key=lambda o: int(o.headers["moderator-source-offset"]))
    assert [o.headers["moderator-error-reason"] for o in dead] == ["unreadable_record", "unreadable_record"], [o.headers for o in dead]
    assert [int(o.headers["moderator-source-offset"]) for o in dead] == [1, 3], "the bad-header record and the corrupt batch"
    assert [o.headers["moderator-source-offset-last"] for o in dead] == ["1", "3"]
    assert all(o.value == b"" and o.headers["moderator-value-omitted"] for o in dead)
    assert "UnicodeDecodeError" in dead[0].headers["moderator-error-message"], dead[0].headers
    assert "crc" in dead[1].headers["moderator-error-message"].lower(), dead[1].headers
    assert {o.id for o in outputs if o.kind == "verdict"} == ids and len(outputs) == 5
    assert svc.metric("moderator_unreadable_records_total") == 2
    assert svc.metric("moderator_dead_letters_total", {"reason": "unreadable_record"}) == 2
    assert svc.readiness()["ready"], "skipping unreadable records is not a broker failure"
    start = time.monotonic()
    assert svc.terminate() == 0, svc.log_tail()
    assert time.monotonic() - start < 20 + 15, "SIGTERM ends the worker within shutdown_timeout_s + shutdown_grace_s"
    from tests.integration.conftest import committed_offsets

    assert committed_offsets(broker.bootstrap, t.group, t.input) == {0: 5}, "every offset, the skipped ones included, is committed"


def corrupt_on_disk(broker, topic: str, marker: bytes) -> None:
    """Flip one byte of ``marker`` in the partition's log segment (the broker serves it as is)."""
    segments = sorted((broker.data_dir / "kraft" / f"{topic}-0").glob("*.log"))
    assert segments, f"no log segment for {topic}"
    for seg in segments:
        data = seg.read_bytes()
        at = data.find(marker)
        if at >= 0:
            with seg.open("r+b") as f:
                f.seek(at)
                f.write(b"X")
            return
    raise AssertionError(f"marker not found in {segments}")


def test_outputs_too_large_for_their_topics_are_sent_in_their_smaller_form(broker, topics, service, collector):
    """The broker refuses a record over the topic's max.message.bytes (and kafka-python's producer
    then refuses everything after it): a dead letter that would not fit in the dead-letter topic
    is sent without its value, so the partition never stalls."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    t = topics(1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.dead_letters, configs={"max.message.bytes": "4000"})])
    finally:
        admin.close()
    noise = random.Random(3).randbytes  # incompressible: the producer compresses (zstd), the limit is on compressed batches
    big_broken = b"\xff\xd8\xff\xe0" + noise(10_240)  # 10 KB that is not a JPEG
    produce(
        broker.bootstrap,
        t.input,
        [
            ("big-broken", b"big-broken", big_broken, [("moderation-id", b"big-broken")]),
            ("small-broken", b"small-broken", b"not an image", [("moderation-id", b"small-broken")]),
            (f"{t.input}-after", b"k", GOOD, [("moderation-id", f"{t.input}-after".encode())]),
        ],
    )
    out = collector(t)
    svc = service(t)
    assert out.wait_for({"big-broken", "small-broken", f"{t.input}-after"}, timeout=120), svc.log_tail()
    by_id = {o.id: o for o in out.snapshot()}
    big = by_id["big-broken"]
    assert big.kind == "dead_letter" and big.value == b"" and "max.message.bytes" in big.headers["moderator-value-omitted"], big.headers
    assert big.headers["moderator-error-reason"] == "undecodable_image" and big.headers["moderator-input-id"] == "big-broken"
    assert by_id["small-broken"].value == b"not an image", "a dead letter that fits keeps its value"
    assert by_id[f"{t.input}-after"].kind == "verdict"
    assert len(out.snapshot()) == 3

    # The limit lowered while the service runs: the broker refuses, kafka-python's producer enters
    # its fatal state, the service replaces it and sends the dead letter without its value.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.dead_letters, configs={"max.message.bytes": "1500"})])
    finally:
        admin.close()
    mid = b"\xff\xd8\xff\xe0" + noise(2_560)  # 2.5 KB: under the limit read at start, over the new one
    produce(
        broker.bootstrap,
        t.input,
        [
            ("mid-broken", b"mid-broken", mid, [("moderation-id", b"mid-broken")]),
            (f"{t.input}-later", b"k", GOOD, [("moderation-id", f"{t.input}-later".encode())]),
        ],
    )
    assert out.wait_for({"mid-broken", f"{t.input}-later"}, timeout=120), svc.log_tail()
    by_id = {o.id: o for o in out.snapshot()}
    assert by_id["mid-broken"].value == b"" and "refused" in by_id["mid-broken"].headers["moderator-value-omitted"]
    assert by_id[f"{t.input}-later"].kind == "verdict"
    assert svc.metric("moderator_producer_renewals_total") >= 1
    assert svc.proc.poll() is None
    assert svc.terminate() == 0
