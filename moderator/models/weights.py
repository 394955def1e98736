"""CLIP weights as numpy arrays keyed by open_clip's state-dict names: random initialisation
(open_clip's scheme) and shape checks against an architecture."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from moderator.errors import ModelError

if TYPE_CHECKING:
    from moderator.models.builder import ClipConfig


def init_random_weights(cfg: ClipConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with open_clip's initialisation (float32)."""
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    w: dict[str, np.ndarray] = {}

    def tower(prefix: str, width: int, layers: int) -> None:
        attn_std = width**-0.5
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for i in range(layers):
            b = f"{prefix}transformer.resblocks.{i}."
            w[b + "ln_1.weight"] = np.ones(width, np.float32)
            w[b + "ln_1.bias"] = np.zeros(width, np.float32)
            w[b + "attn.in_proj_weight"] = normal((3 * width, width), attn_std)
            w[b + "attn.in_proj_bias"] = np.zeros(3 * width, np.float32)
            w[b + "attn.out_proj.weight"] = normal((width, width), proj_std)
            w[b + "attn.out_proj.bias"] = np.zeros(width, np.float32)
            w[b + "ln_2.weight"] = np.ones(width, np.float32)
            w[b + "ln_2.bias"] = np.zeros(width, np.float32)
            w[b + "mlp.c_fc.weight"] = normal((4 * width, width), fc_std)
            w[b + "mlp.c_fc.bias"] = np.zeros(4 * width, np.float32)
            w[b + "mlp.c_proj.weight"] = normal((width, 4 * width), proj_std)
            w[b + "mlp.c_proj.bias"] = np.zeros(width, np.float32)

    vw, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
    scale = vw**-0.5
    channels = 3
    for i, out in enumerate(cfg.vision_stem):
        w[f"visual.stem.{i}.weight"] = normal((out, channels, 3, 3), (channels * 9) ** -0.5)
        w[f"visual.stem.{i}.bias"] = np.zeros(out, np.float32)
        channels = out
    k = cfg.patch_kernel
    w["visual.conv1.weight"] = normal((vw, channels, k, k), (channels * k * k) ** -0.5)
    w["visual.class_embedding"] = normal((vw,), scale)
    w["visual.positional_embedding"] = normal((grid * grid + 1, vw), scale)
    w["visual.ln_pre.weight"], w["visual.ln_pre.bias"] = np.ones(vw, np.float32), np.zeros(vw, np.float32)
    tower("visual.", vw, cfg.vision_layers)
    w["visual.ln_post.weight"], w["visual.ln_post.bias"] = np.ones(vw, np.float32), np.zeros(vw, np.float32)
    w["visual.proj"] = normal((vw, cfg.embed_dim), scale)

    tw = cfg.text_width
    w["token_embedding.weight"] = normal((cfg.vocab_size, tw), 0.02)
    w["positional_embedding"] = normal((cfg.context_length, tw), 0.01)
    tower("", tw, cfg.text_layers)
    w["ln_final.weight"], w["ln_final.bias"] = np.ones(tw, np.float32), np.zeros(tw, np.float32)
    w["text_projection"] = normal((tw, cfg.embed_dim), tw**-0.5)
    w["logit_scale"] = np.asarray(math.log(1 / 0.07), np.float32)
    return w


def check_weights(cfg: ClipConfig, weights: dict[str, np.ndarray]) -> None:
    """Every tensor the graphs need is present with the right shape.

    Raises:
        ModelError: listing the missing or misshapen tensors.
    """
    expected = weight_shapes(cfg)
    problems = []
    for name, shape in expected.items():
        if name not in weights:
            problems.append(f"missing {name}")
        elif tuple(weights[name].shape) != shape:
            problems.append(f"{name}: shape {tuple(weights[name].shape)}, expected {shape}")
    if problems:
        raise ModelError("weights do not fit the architecture: " + "; ".join(problems[:10]))


def weight_shapes(cfg: ClipConfig) -> dict[str, tuple[int, ...]]:
    vw, tw, grid = cfg.vision_width, cfg.text_width, cfg.image_size // cfg.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "visual.conv1.weight": (vw, cfg.patch_in_channels, cfg.patch_kernel, cfg.patch_kernel),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (grid * grid + 1, vw),
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
        "visual.ln_post.weight": (vw,),
        "visual.ln_post.bias": (vw,),
        "visual.proj": (vw, cfg.embed_dim),
        "token_embedding.weight": (cfg.vocab_size, tw),
        "positional_embedding": (cfg.context_length, tw),
        "ln_final.weight": (tw,),
        "ln_final.bias": (tw,),
        "text_projection": (tw, cfg.embed_dim),
    }
    channels = 3
    for i, out in enumerate(cfg.vision_stem):
        shapes[f"visual.stem.{i}.weight"], shapes[f"visual.stem.{i}.bias"] = (out, channels, 3, 3), (out,)
        channels = out
    for prefix, width, layers in (("visual.", vw, cfg.vision_layers), ("", tw, cfg.text_layers)):
        per = {
            "ln_1.weight": (width,),
            "ln_1.bias": (width,),
            "attn.in_proj_weight": (3 * width, width),
            "attn.in_proj_bias": (3 * width,),
            "attn.out_proj.weight": (width, width),
            "attn.out_proj.bias": (width,),
            "ln_2.weight": (width,),
            "ln_2.bias": (width,),
            "mlp.c_fc.weight": (4 * width, width),
            "mlp.c_fc.bias": (4 * width,),
            "mlp.c_proj.weight": (width, 4 * width),
            "mlp.c_proj.bias": (width,),
        }
        for i in range(layers):
            for k, s in per.items():
                shapes[f"{prefix}transformer.resblocks.{i}.{k}"] = s
    return shapes
