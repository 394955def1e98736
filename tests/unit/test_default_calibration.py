"""models/default/calibrate.py's thresholds, on hand-built scores."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def calibrate():
    spec = importlib.util.spec_from_file_location("default_calibrate", REPO / "models" / "default" / "calibrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_separated_category_reviews_the_upper_half_of_the_gap_and_blocks_above_it(calibrate):
    scores = np.array([0.05, 0.1, 0.3, 0.8, 0.9, 0.95])
    positive = np.array([False, False, False, True, True, True])
    review, block = calibrate.review_and_block(scores, positive)
    assert review == 0.5499  # the middle of the empty gap between 0.3 and 0.8
    assert block == 0.7999  # the lowest positive: calibration never saw a negative above it
    assert (scores[positive] >= block).all() and (scores[~positive] < review).all()


def test_block_rises_above_a_stray_negative_when_precision_demands_it(calibrate):
    rng = np.random.default_rng(0)
    positives, negatives = rng.uniform(0.9, 1.0, 150), np.append(rng.uniform(0.0, 0.3, 500), 0.95)
    scores, positive = np.concatenate([positives, negatives]), np.arange(651) < 150
    review, block = calibrate.review_and_block(scores, positive)
    assert review == round((positives.min() + negatives[:-1].max()) / 2 - 1e-4, 4)  # the best-F1 cut keeps every positive
    # Blocking at the gap's top would admit the negative at 0.95: 150 / 151 = 0.9934 < 0.995.
    assert 0.95 < block + 1e-4 and (scores[~positive] < block).all()
    precision = positive[scores >= block].mean()
    assert precision >= calibrate.BLOCK_PRECISION


def test_with_enough_positives_one_stray_negative_is_tolerated(calibrate):
    positives, negatives = np.linspace(0.9, 1.0, 400), np.append(np.linspace(0.0, 0.3, 500), 0.95)
    scores, positive = np.concatenate([positives, negatives]), np.arange(901) < 400
    review, block = calibrate.review_and_block(scores, positive)
    assert block == 0.8999  # 400 / 401 = 0.9975 >= 0.995 at the lowest positive
    assert review == 0.5999
