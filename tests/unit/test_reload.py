from __future__ import annotations

from prometheus_client import CollectorRegistry

from moderator.media.decode import DecodeLimits
from moderator.policy import compile_policy, load_policy
from moderator.policy.reload import PolicyReloader
from moderator.processing import Processor
from moderator.telemetry.metrics import Metrics
from tests.conftest import TINY_POLICY


def _setup(tmp_path, tiny_encoder):
    path = tmp_path / "policy.yaml"
    path.write_text(TINY_POLICY.read_text())
    processor = Processor(tiny_encoder, compile_policy(load_policy(path), tiny_encoder), DecodeLimits())
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    return path, processor, PolicyReloader(path, processor, metrics, interval_s=0), reg


def test_a_valid_edit_is_swapped_in(tmp_path, tiny_encoder):
    path, processor, reloader, reg = _setup(tmp_path, tiny_encoder)
    old = processor.policy
    path.write_text(path.read_text().replace("name: fire", "name: smoke"))
    assert reloader.reload()
    assert processor.policy is not old and processor.policy.version != old.version
    assert "smoke" in processor.policy.categories
    assert reg.get_sample_value("moderator_policy_reloads_total", {"role": "primary", "result": "ok"}) == 1
    assert reg.get_sample_value("moderator_category_actions_total", {"category": "smoke", "action": "block"}) == 0
    assert reg.get_sample_value("moderator_policy_info", {"name": "tiny-random-demo", "version": processor.policy.version, "label": ""}) == 1


def test_a_broken_edit_keeps_the_old_policy(tmp_path, tiny_encoder):
    path, processor, reloader, reg = _setup(tmp_path, tiny_encoder)
    old = processor.policy
    path.write_text("name: x\ncategories: [\n")
    assert not reloader.reload()
    path.write_text(TINY_POLICY.read_text().replace("model: tiny-random", "model: other"))
    assert not reloader.reload()
    path.unlink()
    assert not reloader.reload()
    assert processor.policy is old
    assert reg.get_sample_value("moderator_policy_reloads_total", {"role": "primary", "result": "failed"}) == 3


def test_file_changes_are_noticed_by_the_watcher(tmp_path, tiny_encoder):
    import threading

    path, processor, _, reg = _setup(tmp_path, tiny_encoder)
    reloader = PolicyReloader(path, processor, Metrics(CollectorRegistry()), interval_s=0.05)
    swapped = threading.Event()
    original = reloader.reload

    def reload():
        ok = original()
        swapped.set()
        return ok

    reloader.reload = reload
    reloader.start()
    try:
        path.write_text(path.read_text().replace("name: fire", "name: flames"))
        assert swapped.wait(10), "the watcher did not notice the edit"
        assert "flames" in processor.policy.categories
    finally:
        reloader.stop()


def test_a_hostile_edit_is_a_failed_reload_and_a_later_good_edit_still_loads(tmp_path, tiny_encoder):
    """A YAML tag once killed the reload thread with a ConstructorError traceback; the counter
    stayed 0 and later valid edits were never loaded."""

    from tests.integration.conftest import wait_until

    path, processor, _, reg = _setup(tmp_path, tiny_encoder)
    metrics = Metrics(reg := CollectorRegistry())
    metrics.start(topics=["t"], categories=processor.policy.categories, backend="onnx")
    reloader = PolicyReloader(path, processor, metrics, interval_s=0.02)
    looks = {"n": 0}
    fingerprint = reloader.fingerprint

    def counted():
        looks["n"] += 1
        return fingerprint()

    reloader.fingerprint = counted
    reloader.start()
    try:
        old = processor.policy
        path.write_text("name: x\ncategories: !!python/object/apply:os.system ['echo owned']\n")
        wait_until(
            lambda: reg.get_sample_value("moderator_policy_reloads_total", {"role": "primary", "result": "failed"}) == 1, 10, "the failed reload to be counted"
        )
        assert processor.policy is old
        assert reg.get_sample_value("moderator_policy_stale", {"role": "primary"}) == 1
        seen = looks["n"]  # the watcher looks at the unchanged bad file again, without counting it again
        wait_until(lambda: looks["n"] >= seen + 3, 10, "three more looks at the file")
        assert reg.get_sample_value("moderator_policy_reloads_total", {"role": "primary", "result": "failed"}) == 1
        path.write_text(TINY_POLICY.read_text().replace("name: fire", "name: smoke"))
        wait_until(lambda: "smoke" in processor.policy.categories, 10, "the good edit to be loaded")
        assert reg.get_sample_value("moderator_policy_stale", {"role": "primary"}) == 0
    finally:
        reloader.stop()


def test_an_unexpected_error_while_reloading_is_a_failed_reload(tmp_path, tiny_encoder):
    path, processor, reloader, reg = _setup(tmp_path, tiny_encoder)

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("encoder exploded")

    real, processor.encoder = processor.encoder, Broken()
    path.write_text(path.read_text().replace("name: fire", "name: smoke"))
    try:
        assert reloader.reload() is False
    finally:
        processor.encoder = real
    assert reg.get_sample_value("moderator_policy_reloads_total", {"role": "primary", "result": "failed"}) == 1
    assert reg.get_sample_value("moderator_policy_stale", {"role": "primary"}) == 1
    assert reloader.reload() is True and "smoke" in processor.policy.categories


def test_the_watch_loop_survives_an_error_of_its_own(tmp_path, tiny_encoder):
    from tests.integration.conftest import wait_until

    path, processor, _, reg = _setup(tmp_path, tiny_encoder)
    reloader = PolicyReloader(path, processor, Metrics(CollectorRegistry()), interval_s=0.02)
    calls = {"n": 0}
    original = reloader.fingerprint

    def flaky():
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("while hashing the file")
        return original()

    reloader.fingerprint = flaky
    reloader.start()
    try:
        path.write_text(path.read_text().replace("name: fire", "name: smoke"))
        wait_until(lambda: "smoke" in processor.policy.categories, 10, "a reload after the loop's own error")
        assert reloader._thread.is_alive()
    finally:
        reloader.stop()
