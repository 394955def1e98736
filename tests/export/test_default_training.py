"""models/default/train.py's loss: CLIP's symmetric InfoNCE, every true caption a positive."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from tests.conftest import REPO


def _train_module():
    spec = importlib.util.spec_from_file_location("default_train", REPO / "models" / "default" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_one_caption_per_picture_it_is_clips_loss():
    loss = _train_module().contrastive_loss
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0)) * 5
    labels = torch.arange(6)
    clip = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(loss(logits, torch.eye(6, dtype=torch.bool)), clip)


def test_a_true_caption_of_another_picture_is_pulled_closer_not_pushed_away():
    loss = _train_module().contrastive_loss
    fit = torch.eye(4, dtype=torch.bool)
    fit[0, 1] = fit[1, 0] = True  # pictures 0 and 1 are both "a blaze"; either caption fits either
    for targets, sign in ((fit, -1), (torch.eye(4, dtype=torch.bool), 1)):
        logits = torch.zeros(4, 4, requires_grad=True)
        loss(logits, targets).backward()
        # Gradient descent moves a logit against its gradient: negative means pulled up.
        assert torch.sign(logits.grad[0, 1]) == sign and torch.sign(logits.grad[1, 0]) == sign
        assert logits.grad[0, 2] > 0  # a knife's caption stays a negative either way
