"""Threshold search that tells the truth when scores tie (issue: policy tools that never
mislead, 1): every suggested threshold, re-applied, gets exactly the precision and recall
reported for it."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from moderator.policy.evaluate import pr_curve, suggest


def applied(scores, truth, threshold) -> tuple[float, float]:
    fired = np.asarray(scores) >= threshold
    truth = np.asarray(truth, bool)
    tp = int((fired & truth).sum())
    return (tp / fired.sum() if fired.sum() else 0.0), tp / truth.sum()


def test_tied_scores_are_one_threshold():
    # Softmax at temperature 0.01 saturates: two positives and one negative all score 1.0.
    scores = np.array([1.0, 1.0, 1.0, 0.2, 0.1])
    truth = np.array([True, True, False, False, False])
    thresholds, precision, recall = pr_curve(scores, truth)
    assert list(thresholds) == [1.0, 0.2, 0.1]
    assert precision[0] == 2 / 3 and recall[0] == 1.0, "the three tied images fire together"
    t, p, r = suggest(scores, truth, 0.6)
    assert (p, r) == (2 / 3, 1.0) and applied(scores, truth, t) == (p, r)
    assert suggest(scores, truth, 0.9) is None, "no threshold delivers 0.9: none is suggested (it once said P=1.0, R=0.5)"


@settings(max_examples=int(os.environ.get("MODERATOR_FUZZ_EXAMPLES", "200")), deadline=None)
@given(
    data=st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.5000001, 0.75, 0.99999, 1.0]), st.booleans()), min_size=1, max_size=60),
    target=st.floats(0.05, 1.0),
)
def test_every_suggested_threshold_delivers_what_it_reports(data, target):
    scores = np.array([s for s, _ in data], np.float32)  # the service's scores are float32
    truth = np.array([t for _, t in data])
    result = suggest(scores, truth, target)
    if result is None:
        return
    threshold, precision, recall = result
    assert applied(scores, truth, threshold) == (precision, recall)
    assert precision >= target
    edge = suggest(scores, truth, target, edge=True)
    assert edge[1:] == (precision, recall) and applied(scores, truth, edge[0]) == edge[1:] and edge[0] >= threshold
    thresholds, precisions, recalls = pr_curve(scores, truth)
    for th, p, r in zip(thresholds, precisions, recalls):
        assert applied(scores, truth, th) == (p, r), "every point of the curve is a real operating point"
