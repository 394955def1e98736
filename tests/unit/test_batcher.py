from __future__ import annotations

from moderator.stream.batching import Batcher


def test_batches_close_at_max_size():
    b = Batcher(max_size=3, max_wait_s=60)
    assert b.add("a") is None and b.add("b") is None
    assert b.add("c") == ["a", "b", "c"]
    assert b.due_in() is None, "empty after a full batch"


def test_partial_batch_is_due_after_max_wait():
    b = Batcher(max_size=100, max_wait_s=0.0)
    assert b.due_in() is None
    b.add("a")
    assert b.due_in() == 0.0
    assert b.take() == ["a"]
    slow = Batcher(max_size=100, max_wait_s=60)
    slow.add("x")
    assert 59 < slow.due_in() <= 60
