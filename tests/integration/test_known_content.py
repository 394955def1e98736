"""Known content through the real broker (issue: known content first): reposts are decided from
the result cache and every repeated id still gets its own verdict; deny and allow banks decide
and override; banks reload under load, and a broken bank file keeps the old banks."""

from __future__ import annotations

import json
import random
import time

import jsonschema
import pytest
from PIL import Image, ImageOps

from moderator.hashing.bankfile import write_bank
from moderator.hashing.compute import pdq_of
from tests.conftest import REPO
from tests.integration.conftest import SteadyProducer, produce, wait_until
from tests.scenes import encode, scene
from tests.unit.test_hashing import picture

pytestmark = pytest.mark.integration

DEFAULT = {"encoder": {"model_dir": str(REPO / "models" / "default")}, "policy": {"path": str(REPO / "policies" / "default.yaml")}}


def test_reposts_banks_and_overrides_through_the_broker(broker, topics, service, collector, tmp_path):
    t = topics(3)
    rng = random.Random(7)
    originals = {f"scene-{i}": encode(scene(1000 + i, (320, 240)), "JPEG", quality=85) for i in range(70)}
    knife = picture("knife", 41)
    cup = picture("cup", 42, "brown")
    banks = tmp_path / "banks"
    banks.mkdir()
    denied = [scene(1000 + i, (320, 240)) for i in range(5)]  # scene-0..4 are known bad (banked by PDQ)
    write_bank(
        banks / "known-bad.csv",
        "deny",
        [{"hash_type": "pdq", "hash": pdq_of(img).hex, "note": f"case {i}"} for i, img in enumerate(denied)],
        category="weapons",
    )
    write_bank(banks / "cleared.csv", "allow", [{"hash_type": "pdq", "hash": pdq_of(knife).hex, "note": "prop knife"}], overrides="block")
    messages = []
    for name, data in originals.items():
        messages.append((f"{t.input}-{name}", data))
    repeats = [rng.choice(list(originals)) for _ in range(30)]  # 30 % of 100 messages are repeats
    for i, name in enumerate(repeats):
        messages.append((f"{t.input}-{name}-repost-{i}", originals[name]))
    messages.append((f"{t.input}-cleared-knife", encode(knife, "JPEG", quality=80)))
    messages.append((f"{t.input}-bad-cup-resized", encode(cup.resize((160, 120)), "PNG")))
    # The cheapest evasion of a hash bank: mirror or turn the picture (hashing.pdq_turns)
    messages.append((f"{t.input}-scene-0-mirrored", encode(denied[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=80)))
    messages.append((f"{t.input}-knife-mirrored", encode(knife.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=80)))
    # ... or put it inside a border (hashing.pdq_trim_borders)
    messages.append((f"{t.input}-scene-1-framed", encode(ImageOps.expand(denied[1], border=(32, 24), fill="white"), "JPEG", quality=80)))
    write_bank(banks / "cups.csv", "deny", [{"hash_type": "pdq", "hash": pdq_of(cup).hex}], action="block", category="drugs")
    out = collector(t)
    svc = service(t, hashing={"banks_dir": str(banks)}, **DEFAULT)
    # Originals first, repeats after them: by the time a repeat is polled its original is decided.
    produce(broker.bootstrap, t.input, [(mid, mid.encode(), data, [("moderation-id", mid.encode())]) for mid, data in messages[:70]])
    assert out.wait_for({mid for mid, _ in messages[:70]}, timeout=180), svc.log_tail()
    produce(broker.bootstrap, t.input, [(mid, mid.encode(), data, [("moderation-id", mid.encode())]) for mid, data in messages[70:]])
    ids = {mid for mid, _ in messages}
    assert out.wait_for(ids, timeout=180), svc.log_tail()
    verdicts = [o for o in out.snapshot() if o.kind == "verdict"]
    by_id = {o.id: o.json() for o in verdicts}
    assert set(by_id) == ids, "every message, repeated or not, gets its own verdict"
    schema = json.loads((REPO / "docs" / "schemas" / "verdict.schema.json").read_text())
    for v in by_id.values():
        jsonschema.validate(v, schema)
    reposts = [by_id[mid] for mid, _ in messages[70:100]]
    assert all(v["cached"] for v in reposts), [v["id"] for v in reposts if not v["cached"]]
    for i, name in enumerate(repeats):
        repost, original = by_id[f"{t.input}-{name}-repost-{i}"], by_id[f"{t.input}-{name}"]
        # Its own message: another id and another position (the same offset can recur on another partition).
        position = (repost["source"]["partition"], repost["source"]["offset"])
        assert repost["id"] != original["id"] and position != (original["source"]["partition"], original["source"]["offset"])
        assert (repost["decision"], repost["hashes"], repost["categories"]) == (original["decision"], original["hashes"], original["categories"])
        assert repost["timings"]["encode_ms"] == 0
    for i in range(5):
        v = by_id[f"{t.input}-scene-{i}"]
        assert v["decision"] == "block" and v["known"]["reason"] == "hash_match" and v["categories"] == []
        assert v["known"]["match"]["bank"] == "known-bad" and v["known"]["match"]["distance"] <= 31
        assert v["known"]["classifier_decision"] is None
    cleared = by_id[f"{t.input}-cleared-knife"]
    assert cleared["decision"] == "allow" and cleared["known"]["kind"] == "allow"
    assert cleared["known"]["classifier_decision"] == "block", "the override is recorded with what the classifier said"
    bad_cup = by_id[f"{t.input}-bad-cup-resized"]
    assert bad_cup["decision"] == "block" and bad_cup["known"]["match"]["category"] == "drugs"
    mirrored = by_id[f"{t.input}-scene-0-mirrored"]
    assert mirrored["decision"] == "block" and mirrored["known"]["match"]["turn"] == "mirror" and mirrored["known"]["match"]["note"] == "case 0"
    assert "the frame mirrored" in mirrored["reasons"][0]
    framed = by_id[f"{t.input}-scene-1-framed"]
    assert framed["decision"] == "block" and framed["known"]["match"]["trimmed"] and framed["known"]["match"]["note"] == "case 1"
    knife_mirrored = by_id[f"{t.input}-knife-mirrored"]
    assert knife_mirrored["known"] is None and knife_mirrored["decision"] == "block", "an allow bank never matches a turned frame"
    assert svc.metric("moderator_result_cache_total", {"result": "hit"}) >= 30
    saved = svc.metric("moderator_encodes_saved_total", {"reason": "hash_match"})
    assert saved >= 6, "five banked scenes and the cup were decided without the encoder"
    assert svc.metric("moderator_hash_matches_total", {"bank": "known-bad", "kind": "deny", "hash_type": "pdq"}) >= 5
    assert svc.metric("moderator_hash_matches_total", {"bank": "cleared", "kind": "allow", "hash_type": "pdq"}) == 1
    assert svc.metric("moderator_bank_entries", {"bank": "known-bad", "kind": "deny", "hash_type": "pdq"}) == 5
    assert svc.metric("moderator_hash_lookup_seconds_count") >= 70
    assert svc.terminate() == 0


def test_banks_reload_under_load_and_a_broken_file_keeps_the_old_ones(broker, topics, service, collector, tmp_path):
    t = topics(2)
    banks = tmp_path / "banks"
    banks.mkdir()
    write_bank(banks / "base.csv", "deny", [{"hash_type": "pdq", "hash": pdq_of(scene(1, (320, 240))).hex}])
    target = scene(2, (320, 240))
    out = collector(t)
    svc = service(t, hashing={"banks_dir": str(banks), "reload_interval_s": 0.2, "cache_size": 0}, **DEFAULT)

    def message(i: int):
        mid = f"{t.input}-load-{i}"
        return mid, mid.encode(), encode(target, "JPEG", quality=70 + i % 20), None

    producer = SteadyProducer(broker.bootstrap, t.input, message)
    sent = producer.sent
    with producer:
        wait_until(lambda: len(out.snapshot()) >= 20, 120, "verdicts under load")
        (banks / "broken.csv").write_text("# kind: deny\nhash_type,hash\npdq,not-a-hash\n")
        wait_until(lambda: svc.metric("moderator_banks_stale") == 1, 30, "the broken bank to be noticed")
        assert svc.metric("moderator_bank_reloads_total", {"result": "failed"}) >= 1
        assert "broken.csv:3: hash is 64 hexadecimal digits" in svc.log_tail(200)
        (banks / "broken.csv").unlink()
        written_at = time.time()
        write_bank(banks / "new.csv", "deny", [{"hash_type": "pdq", "hash": pdq_of(target).hex, "note": "added live"}])
        # The new bank in service (stale can clear between the unlink and the write, before it exists).
        wait_until(lambda: svc.metric("moderator_bank_entries", {"bank": "new", "kind": "deny", "hash_type": "pdq"}) == 1, 30, "the new bank to load")
        assert svc.metric("moderator_banks_stale") == 0
        switched_at = len(sent)
        wait_until(lambda: len(out.snapshot()) >= switched_at + 20, 120, "verdicts after the reload")
    assert out.wait_for(set(sent), timeout=120), svc.log_tail()
    by_id = {o.id: o.json() for o in out.snapshot() if o.kind == "verdict"}
    assert set(by_id) == set(sent), "nothing lost while banks reloaded"
    before = [v for v in by_id.values() if _epoch(v["processed_at"]) < written_at]
    assert len(before) >= 20 and all(v["known"] is None for v in before), "nothing matched before the bank existed"
    after = [by_id[mid] for mid in sent[switched_at:]]
    assert len(after) >= 20 and all(v["known"] and v["known"]["match"]["bank"] == "new" for v in after), (
        "every message sent after the swap was seen is matched by the new bank"
    )
    assert svc.metric("moderator_bank_reloads_total", {"result": "ok"}) >= 1
    assert svc.terminate() == 0


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
