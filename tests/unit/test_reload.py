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
