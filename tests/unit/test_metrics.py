from __future__ import annotations

from prometheus_client import CollectorRegistry

from moderator import __version__
from moderator.errors import DEAD_LETTER_REASONS
from moderator.telemetry.health import Health
from moderator.telemetry.metrics import STAGES, Metrics


def test_expected_series_exist_at_zero_before_any_traffic():
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.start(topics=["images"], categories=["weapons", "fire"], backend="onnx")
    get = reg.get_sample_value
    assert get("moderator_messages_consumed_total", {"topic": "images"}) == 0
    for decision in ("allow", "review", "block"):
        assert get("moderator_verdicts_total", {"decision": decision}) == 0
    for reason in DEAD_LETTER_REASONS:
        assert get("moderator_dead_letters_total", {"reason": reason}) == 0
    assert get("moderator_category_actions_total", {"category": "fire", "action": "block"}) == 0
    for stage in STAGES:
        assert get("moderator_stage_seconds_count", {"stage": stage}) == 0
    assert get("moderator_build_info", {"version": __version__}) == 1


# Labelled by hash bank: created when banks load (a service without banks has none to show).
PER_BANK = {"moderator_hash_matches"}


def test_per_bank_series_are_created_when_banks_load(tmp_path):
    from moderator.hashing.bankfile import write_bank
    from moderator.hashing.banks import load_banks

    write_bank(tmp_path / "known-bad.csv", "deny", [{"hash_type": "pdq", "hash": "ab" * 32}])
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    metrics.start(topics=["images"], categories=["weapons"], backend="onnx")
    metrics.banks_loaded(load_banks(tmp_path, 100))
    get = reg.get_sample_value
    for hash_type in ("sha256", "pdq"):
        assert get("moderator_hash_matches_total", {"bank": "known-bad", "kind": "deny", "hash_type": hash_type}) == 0
    assert get("moderator_bank_entries", {"bank": "known-bad", "kind": "deny", "hash_type": "pdq"}) == 1
    assert get("moderator_bank_entries", {"bank": "known-bad", "kind": "deny", "hash_type": "sha256"}) == 0


STANDARD_PREFIXES = ("process_", "python_gc_", "python_info")


def test_metric_names_follow_prometheus_conventions():
    reg = CollectorRegistry()
    Metrics(reg).start(topics=["images"], categories=["weapons"], backend="onnx")
    every = list(reg.collect())
    # prometheus_client's standard collectors, added to the registry on purpose (docs/metrics.md).
    standard = {f.name for f in every if f.name.startswith(STANDARD_PREFIXES)}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_gc_collections", "python_info"} <= standard
    families = [f for f in every if f.name not in standard]
    assert len(families) >= 15
    for family in families:
        assert family.name.startswith("moderator_"), family.name
        if family.type == "counter" and family.name not in PER_BANK:
            assert family.samples, f"{family.name} has no pre-created series"
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            # durations in seconds; the two count histograms are unitless counts of images and frames
            assert family.name.endswith("_seconds") or family.name in ("moderator_batch_size", "moderator_frames_per_message"), family.name


def test_health_is_ready_only_when_every_check_passes():
    h = Health()
    assert not h.ready(), "no checks yet means not ready"
    h.set("model", True)
    h.probe("backend", lambda: True)
    assert h.ready()
    h.probe("backend", lambda: 1 / 0)
    assert not h.ready() and h.checks()["backend"] is False
    h.probe("backend", lambda: True)
    h.set("backend", False)  # the last encoder call failed, although the encoder reports ready
    assert h.checks()["backend"] is False and not h.ready()


def test_required_checks_fail_until_their_component_reports():
    h = Health(required=("model", "broker", "backend"))
    h.set("model", True)
    assert h.checks() == {"model": True, "broker": False, "backend": False} and not h.ready()
    h.probe("backend", lambda: True)
    assert h.checks()["backend"] is True and not h.ready(), "a required check nobody has reported keeps it unready"
    h.set("broker", True)
    assert h.ready()
    h.set("broker", False)
    assert not h.ready()


def test_every_metric_is_documented():
    from tests.conftest import REPO

    doc = (REPO / "docs" / "metrics.md").read_text()
    reg = CollectorRegistry()
    Metrics(reg)
    names = [
        f.name + ("_total" if f.type == "counter" else "_info" if f.type == "info" else "") for f in reg.collect() if not f.name.startswith(STANDARD_PREFIXES)
    ]
    assert all(f"`{p}*`" in doc for p in STANDARD_PREFIXES[:2]), "docs/metrics.md names the standard collectors"
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"docs/metrics.md lacks {missing}"
