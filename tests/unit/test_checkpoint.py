from __future__ import annotations

import threading

import pytest

from moderator.stream.checkpoint import Checkpoint
from moderator.stream.exceptions import OffsetOrderError

TP = ("images", 0)


def _tracked(cp: Checkpoint, offsets):
    cp.assign([TP])
    return {o: cp.track(*TP, o) for o in offsets}


def test_nothing_committable_until_the_first_offset_is_acked():
    cp = Checkpoint()
    tokens = _tracked(cp, [5, 6, 7])
    cp.ack(tokens[6], 6)
    cp.ack(tokens[7], 7)
    assert cp.due() == {}, "offset 5 has no verdict yet, so nothing may be committed"
    cp.ack(tokens[5], 5)
    assert cp.due() == {TP: 8}, "commit offset + 1 of the last contiguous acknowledged offset"


def test_out_of_order_acks_advance_only_contiguously():
    cp = Checkpoint()
    tokens = _tracked(cp, [0, 1, 2, 3, 4])
    for o in (0, 2, 4):
        cp.ack(tokens[o], o)
    assert cp.due() == {TP: 1}
    cp.ack(tokens[1], 1)
    assert cp.due() == {TP: 3}
    assert cp.in_flight() == 1


def test_gaps_in_offsets_are_fine():
    cp = Checkpoint()
    tokens = _tracked(cp, [10, 13, 20])  # compaction or transaction markers leave gaps
    for o in (10, 13, 20):
        cp.ack(tokens[o], o)
    assert cp.due() == {TP: 21}


def test_offsets_going_backwards_are_refused():
    cp = Checkpoint()
    _tracked(cp, [3])
    with pytest.raises(OffsetOrderError, match=r"images\[0\] offset=3 tracked after offset=3"):
        cp.track(*TP, 3)


def test_commit_sends_only_new_offsets_and_keeps_them_on_failure():
    cp = Checkpoint()
    tokens = _tracked(cp, [0, 1])
    cp.ack(tokens[0], 0)
    calls = []

    def failing(offsets):
        calls.append(dict(offsets))
        raise RuntimeError("broker unavailable")

    with pytest.raises(RuntimeError):
        cp.commit(failing)
    assert cp.due() == {TP: 1}, "a failed commit is retried next time"
    assert cp.commit(calls.append) == {TP: 1}
    assert cp.commit(calls.append) == {}, "nothing new: no commit request"
    cp.ack(tokens[1], 1)
    assert cp.commit(calls.append) == {TP: 2}
    assert calls == [{TP: 1}, {TP: 1}, {TP: 2}]
    assert cp.committed_offsets() == {TP: 2}


def test_late_acks_for_a_revoked_assignment_are_ignored():
    cp = Checkpoint()
    tokens = _tracked(cp, [0, 1])
    cp.revoke([TP])
    cp.ack(tokens[0], 0)  # arrives after the revoke
    cp.assign([TP])  # same partition assigned again: a fresh tracker
    assert cp.due() == {}
    assert cp.in_flight() == 0
    new = cp.track(*TP, 0)  # re-delivered from the committed offset
    cp.ack(new, 0)
    assert cp.due() == {TP: 1}


def test_records_of_an_unassigned_partition_are_not_tracked():
    cp = Checkpoint()
    assert cp.track("images", 9, 0) is None
    assert cp.in_flight() == 0


def test_wait_drained_wakes_on_acks_from_other_threads():
    cp = Checkpoint()
    tokens = _tracked(cp, [0, 1, 2])
    assert not cp.wait_drained([TP], timeout=0.01)
    threads = [threading.Thread(target=cp.ack, args=(tokens[o], o)) for o in (2, 0, 1)]
    for t in threads:
        t.start()
    assert cp.wait_drained(None, timeout=5)
    assert cp.due() == {TP: 3}


def test_the_committer_decides_when_and_what_to_commit():
    from moderator.stream.checkpoint import Checkpoint, Committer

    cp = Checkpoint()
    cp.assign([("t", 0), ("t", 1)])
    synced, queued = [], []
    committer = Committer(cp, 3600.0, synced.append, lambda offsets, done: (queued.append(offsets), done(None)))
    for tp in ((("t", 0)), ("t", 1)):
        token = cp.track(*tp, 5)
        cp.ack(token, 5)
    assert committer.maybe_commit() == {("t", 0): 6, ("t", 1): 6} and synced == [{("t", 0): 6, ("t", 1): 6}]
    token = cp.track("t", 0, 6)
    cp.ack(token, 6)
    assert committer.maybe_commit() is None, "not before the interval"
    assert committer.maybe_commit(force=True) == {("t", 0): 7}
    token = cp.track("t", 1, 6)
    cp.ack(token, 6)
    results = []
    assert committer.revoke([("t", 1)], 0.1, results.append) == 0
    assert queued == [{("t", 1): 7}] and results == [None], "revoked partitions' done offsets are committed asynchronously"
    assert cp.due([("t", 1)]) == {} and cp.in_flight([("t", 1)]) == 0
    cp.track("t", 0, 7)
    committer.lose([("t", 0)])
    assert len(queued) == 1 and len(synced) == 2, "lost partitions are not committed"
