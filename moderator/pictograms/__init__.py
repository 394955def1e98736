"""Procedural pictograms with captions: the training and evaluation data of the default model
(models/default), and the labelled examples under examples/. Deterministic for a seed."""

from moderator.pictograms.captions import caption, class_prompt, class_prompts
from moderator.pictograms.dataset import (
    BENIGN,
    CATEGORIES,
    HELD_OUT_COMBOS,
    MODERATED,
    Sample,
    generate,
)
from moderator.pictograms.draw import BACKGROUNDS, COLOURS, OBJECTS

__all__ = [
    "BACKGROUNDS",
    "BENIGN",
    "CATEGORIES",
    "COLOURS",
    "HELD_OUT_COMBOS",
    "MODERATED",
    "OBJECTS",
    "Sample",
    "caption",
    "class_prompt",
    "class_prompts",
    "generate",
]
