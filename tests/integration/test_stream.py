"""The service against a real broker: formats, dead letters, delivery guarantees, shutdown."""

from __future__ import annotations

import json
import time
from collections import Counter

import jsonschema
import pytest

from moderator.local.samples import sample_messages
from tests.conftest import REPO
from tests.integration.conftest import committed_offsets, input_offsets, produce, small_jpegs, wait_until

pytestmark = pytest.mark.integration


def test_mixed_stream_gets_exactly_one_output_per_message(broker, topics, service, collector):
    t = topics(3)
    samples = sample_messages(prefix=t.input)
    produce(broker.bootstrap, t.input, [(s.id, s.key, s.value, s.headers) for s in samples])
    out = collector(t)
    svc = service(t)
    assert out.wait_for({s.id for s in samples}, timeout=120), f"missing outputs\n{svc.log_tail()}"
    assert svc.terminate() == 0, svc.log_tail()

    outputs = out.snapshot()
    counts = Counter(o.id for o in outputs)
    assert set(counts) == {s.id for s in samples}
    assert max(counts.values()) == 1, f"duplicates: {[k for k, v in counts.items() if v > 1]}"
    schema = json.loads((REPO / "docs" / "schemas" / "verdict.schema.json").read_text())
    by_id = {o.id: o for o in outputs}
    for s in samples:
        o = by_id[s.id]
        if s.expect == "verdict":
            assert o.kind == "verdict", f"{s.id} ({s.description}): got dead letter {o.headers.get('moderator-error-message')}"
            v = o.json()
            jsonschema.validate(v, schema)
            assert v["source"]["topic"] == t.input and v["model"]["name"] == "tiny-random"
            assert o.key == s.key, "verdicts are keyed by the input key"
            assert v["metadata"]["source"] == "demo"
        else:
            assert o.kind == "dead_letter", f"{s.id} ({s.description}) should be a dead letter"
            assert o.headers["moderator-error-reason"] == s.expect, f"{s.id}: {o.headers}"
            assert o.value == s.value, "dead letters keep the original value"
            assert o.key == s.key
            for k, v in s.headers:
                assert o.headers[k] == v.decode(), "original headers are kept"
            assert o.headers["moderator-source-topic"] == t.input


def test_metrics_and_health_reflect_the_traffic(broker, topics, service, collector):
    t = topics(1)
    samples = sample_messages(prefix=t.input)
    out = collector(t)
    svc = service(t)
    assert svc.get("/healthz")[0] == 200
    ready = svc.readiness()
    assert ready["ready"] and set(ready["checks"]) >= {"broker", "model", "policy", "backend"}, ready
    produce(broker.bootstrap, t.input, [(s.id, s.key, s.value, s.headers) for s in samples])
    assert out.wait_for({s.id for s in samples}, timeout=120)
    valid = sum(s.expect == "verdict" for s in samples)
    wait_until(lambda: sum(svc.metric("moderator_verdicts_total", {"decision": d}) or 0 for d in ("allow", "review", "block")) == valid, 30, "verdict counters")
    assert svc.metric("moderator_messages_consumed_total", {"topic": t.input}) == len(samples)
    for reason, n in Counter(s.expect for s in samples if s.expect != "verdict").items():
        assert svc.metric("moderator_dead_letters_total", {"reason": reason}) == n
    assert svc.metric("moderator_stage_seconds_count", {"stage": "encode"}) >= 1
    assert svc.metric("moderator_model_info", {"name": "tiny-random"}) == 1
    assert svc.terminate() == 0


def test_readiness_does_not_flap_once_ready(broker, topics, service):
    """Once /readyz says 200 it stays 200 while nothing fails: a probe that saw the service ready
    at startup must not see it unready a moment later (it did, while the first poll looked up the
    group coordinator)."""
    t = topics(1)
    svc = service(t, wait_ready=False)
    seen: list[tuple[int, dict]] = []

    def first_ready():
        try:
            status, body = svc.get("/readyz")
        except OSError:  # not listening yet
            return False
        if status == 200:
            seen.append((status, json.loads(body)))
        return status == 200

    wait_until(first_ready, 120, "the first 200 from /readyz", interval=0.02)
    for _ in range(100):  # two seconds at 20 ms
        status, body = svc.get("/readyz")
        seen.append((status, json.loads(body)))
        time.sleep(0.02)
    flaps = [body["checks"] for status, body in seen if status != 200]
    assert not flaps, f"/readyz went 503 after the first 200: {flaps[:3]}"
    assert svc.terminate() == 0


def test_sigterm_drains_and_commits_exactly_what_was_processed(broker, topics, service, collector):
    t = topics(2)
    produce(broker.bootstrap, t.input, small_jpegs(t.input, 1500))
    out = collector(t)
    svc = service(t)
    assert out.wait_count(100, timeout=60), svc.log_tail()
    assert svc.terminate() == 0, svc.log_tail()
    committed = committed_offsets(broker.bootstrap, t.group, t.input)
    where = input_offsets(broker.bootstrap, t.input)

    def covered():
        done: dict[int, set[int]] = {}
        for o in out.snapshot():
            p, off = where[o.id]
            done.setdefault(p, set()).add(off)
        return all(done.get(p, set()) == set(range(c)) for p, c in committed.items()) and done

    assert sum(committed.values()) >= 100
    wait_until(covered, 30, f"outputs to cover exactly the committed offsets {committed}")
    assert len(out.snapshot()) == sum(committed.values()), "no message was processed beyond the committed offsets"


def test_kill_9_then_restart_loses_nothing(broker, topics, service, collector):
    t = topics(2)
    total = 2000
    produce(broker.bootstrap, t.input, small_jpegs(t.input, total))
    out = collector(t)
    svc = service(t, batch={"micro_batch_size": 4, "max_in_flight": 32})
    assert out.wait_count(200, timeout=60), svc.log_tail()
    svc.kill()
    before = len(out.snapshot())
    committed = committed_offsets(broker.bootstrap, t.group, t.input)
    assert before < total, "the worker finished before it was killed; the test proves nothing"
    assert committed, "nothing was committed before the kill"

    service(t)
    ids = {f"{t.input}-{i}" for i in range(total)}
    assert out.wait_for(ids, timeout=180), f"{len(ids - {o.id for o in out.snapshot()})} inputs have no output"
    where = input_offsets(broker.bootstrap, t.input)
    counts = Counter(o.id for o in out.snapshot())
    dupes = [i for i, n in counts.items() if n > 1]
    for mid in dupes:
        p, off = where[mid]
        assert off >= committed.get(p, 0), f"{mid} at {p}/{off} was duplicated although committed ({committed})"


def test_broker_restart_mid_stream_recovers_by_itself(broker, topics, service, collector):
    t = topics(2)
    produce(broker.bootstrap, t.input, small_jpegs(f"{t.input}-a", 300))
    out = collector(t)
    svc = service(t, batch={"micro_batch_size": 4, "max_in_flight": 16})
    assert out.wait_count(30, timeout=60)
    broker.stop()
    wait_until(lambda: not svc.readiness()["checks"]["broker"], 60, "readiness to report the broker down")
    broker.start()
    produce(broker.bootstrap, t.input, small_jpegs(f"{t.input}-b", 300))
    ids = {f"{t.input}-a-{i}" for i in range(300)} | {f"{t.input}-b-{i}" for i in range(300)}
    assert out.wait_for(ids, timeout=180), f"{len(ids - {o.id for o in out.snapshot()})} inputs lost\n{svc.log_tail()}"
    assert svc.proc.poll() is None, "the service must survive a broker restart"
    wait_until(lambda: svc.readiness()["ready"], 30, "readiness after the restart")
    assert svc.terminate() == 0


def test_two_workers_split_partitions_and_process_each_message_once(broker, topics, service, collector):
    t = topics(4)
    a = service(t)
    b = service(t)
    wait_until(
        lambda: a.metric("moderator_assigned_partitions") == 2 and b.metric("moderator_assigned_partitions") == 2, 60, "both workers to own two partitions"
    )
    out = collector(t)
    produce(broker.bootstrap, t.input, small_jpegs(t.input, 400))
    ids = {f"{t.input}-{i}" for i in range(400)}
    assert out.wait_for(ids, timeout=120)
    consumed = [w.metric("moderator_messages_consumed_total", {"topic": t.input}) for w in (a, b)]
    assert all(c > 0 for c in consumed) and sum(consumed) == 400, consumed
    assert a.terminate() == 0 and b.terminate() == 0
    counts = Counter(o.id for o in out.snapshot())
    assert set(counts) == ids and max(counts.values()) == 1


def test_backpressure_pauses_and_resumes(broker, topics, service, collector):
    t = topics(1)
    produce(broker.bootstrap, t.input, small_jpegs(t.input, 300))
    out = collector(t)
    svc = service(t, batch={"micro_batch_size": 4, "max_in_flight": 8})
    assert out.wait_for({f"{t.input}-{i}" for i in range(300)}, timeout=120)
    assert svc.metric("moderator_partition_pauses_total") > 0, "a full in-flight window pauses consumption"
    wait_until(lambda: svc.metric("moderator_in_flight_messages") == 0, 10, "in-flight to drain")
    assert svc.metric("moderator_paused_partitions") == 0
    assert svc.terminate() == 0


def test_bad_policy_refuses_to_start_with_a_clear_error(topics, service, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncategories:\n  - name: a\n    prompts: []\n    review: 0.1\n    block: 0.2\n")
    svc = service(topics(1), wait_ready=False, policy={"path": bad})
    assert svc.wait(60) == 2
    assert "bad.yaml:3:5: categories.0: a category needs at least one prompt" in svc.log_tail()


def test_policy_reload_under_load_loses_nothing_and_never_mixes_policies(broker, topics, service, collector, tmp_path):
    import signal

    from tests.conftest import TINY_POLICY

    policy = tmp_path / "policy.yaml"
    policy.write_text(TINY_POLICY.read_text())
    t = topics(2)
    out = collector(t)
    svc = service(t, policy={"path": policy, "reload_interval_s": 0.2}, batch={"micro_batch_size": 4, "max_in_flight": 16})
    produce(broker.bootstrap, t.input, small_jpegs(f"{t.input}-a", 600))
    assert out.wait_count(50, timeout=60)
    policy.write_text("name: broken\ncategories: [\n")  # a bad edit: the old policy keeps serving
    wait_until(lambda: svc.metric("moderator_policy_reloads_total", {"role": "primary", "result": "failed"}) >= 1, 30, "the failed reload")
    policy.write_text(TINY_POLICY.read_text().replace("name: fire", "name: smoke"))
    svc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: svc.metric("moderator_policy_reloads_total", {"role": "primary", "result": "ok"}) >= 1, 30, "the reload")
    produce(broker.bootstrap, t.input, small_jpegs(f"{t.input}-b", 200))
    ids = {f"{t.input}-a-{i}" for i in range(600)} | {f"{t.input}-b-{i}" for i in range(200)}
    assert out.wait_for(ids, timeout=120)
    assert svc.terminate() == 0
    verdicts = [o.json() for o in out.snapshot()]
    assert Counter(v["id"] for v in verdicts) == Counter(ids), "every message exactly once"
    by_version: dict[str, set[tuple[str, ...]]] = {}
    for v in verdicts:
        by_version.setdefault(v["policy"]["version"], set()).add(tuple(c["name"] for c in v["categories"]))
    assert len(by_version) == 2, f"old and new policy both scored: {list(by_version)}"
    assert sorted(by_version.values(), key=str) == [{("weapons", "drugs", "fire")}, {("weapons", "drugs", "smoke")}], (
        "each version scored with exactly its own categories"
    )


def test_shadow_policy_is_reported_and_counted_but_never_acted_on(broker, topics, service, collector, tmp_path):
    from tests.conftest import TINY_POLICY

    shadow = tmp_path / "candidate.yaml"
    shadow.write_text(
        TINY_POLICY.read_text().replace("name: tiny-random-demo", "name: candidate").replace("review: 0.0\n    block: 0.012", "review: -1.0\n    block: -1.0")
    )  # blocks everything
    t = topics(1)
    out = collector(t)
    svc = service(t, policy={"shadow_path": shadow})
    produce(broker.bootstrap, t.input, small_jpegs(t.input, 60))
    assert out.wait_count(60, timeout=60)
    verdicts = [o.json() for o in out.snapshot()]
    assert all(v["shadow"]["policy"]["name"] == "candidate" and v["shadow"]["decision"] == "block" for v in verdicts)
    assert all("weapons" in v["shadow"]["fired"] for v in verdicts)
    acting = Counter(v["decision"] for v in verdicts)
    assert acting["block"] < 60, "the shadow policy's decision is never the verdict's decision"
    wait_until(
        lambda: (
            (svc.metric("moderator_shadow_agreement_total", {"result": "agree"}) or 0)
            + (svc.metric("moderator_shadow_agreement_total", {"result": "disagree"}) or 0)
            == 60
        ),
        30,
        "agreement counters",
    )
    assert svc.metric("moderator_shadow_agreement_total", {"result": "agree"}) == acting["block"]
    assert svc.metric("moderator_shadow_decisions_total", {"decision": "block"}) == 60
    assert svc.terminate() == 0
