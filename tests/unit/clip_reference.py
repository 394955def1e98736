"""An independent numpy forward pass of open_clip's CLIP (VisionTransformer + text Transformer),
written from the open_clip source, to check the ONNX graphs the builder emits."""

from __future__ import annotations

import numpy as np


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def quick_gelu(x):
    return x * (1.0 / (1.0 + np.exp(-1.702 * x)))


def gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def activation(cfg):
    return gelu if cfg.act == "gelu" else quick_gelu


def conv2d(x, weight, bias, stride, pad):
    """Cross-correlation as torch's Conv2d: x [N,C,H,W], weight [O,C,K,K]."""
    n, c, h, wd = x.shape
    o, _, k, _ = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = np.stack([x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] for i in range(k) for j in range(k)], axis=2)
    y = weight.reshape(o, c * k * k) @ cols.reshape(n, c * k * k, oh * ow)
    if bias is not None:
        y = y + bias[:, None]
    return y.reshape(n, o, oh, ow)


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def block(x, w, p, heads, mask=None, act=quick_gelu):
    n, t, width = x.shape
    hd = width // heads
    h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
    qkv = h @ w[p + "attn.in_proj_weight"].T + w[p + "attn.in_proj_bias"]
    q, k, v = np.split(qkv, 3, axis=-1)
    q = q.reshape(n, t, heads, hd).transpose(0, 2, 1, 3) * hd**-0.5
    k = k.reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
    v = v.reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2)
    if mask is not None:
        s = s + mask
    o = (softmax(s) @ v).transpose(0, 2, 1, 3).reshape(n, t, width)
    x = x + o @ w[p + "attn.out_proj.weight"].T + w[p + "attn.out_proj.bias"]
    h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
    h = act(h @ w[p + "mlp.c_fc.weight"].T + w[p + "mlp.c_fc.bias"])
    return x + h @ w[p + "mlp.c_proj.weight"].T + w[p + "mlp.c_proj.bias"]


def encode_image(cfg, w, pixels):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = pixels.astype(np.float64)
    n, act = x.shape[0], activation(cfg)
    for i in range(len(cfg.vision_stem)):  # hybrid ViT: 3x3 stride-2 convolutions before the patches
        x = act(conv2d(x, w[f"visual.stem.{i}.weight"], w[f"visual.stem.{i}.bias"], stride=2, pad=1))
    x = conv2d(x, w["visual.conv1.weight"], None, stride=cfg.patch_kernel, pad=0)
    x = x.reshape(n, cfg.vision_width, -1).transpose(0, 2, 1)
    cls = np.broadcast_to(w["visual.class_embedding"], (n, 1, cfg.vision_width))
    x = np.concatenate([cls, x], axis=1) + w["visual.positional_embedding"]
    x = layer_norm(x, w["visual.ln_pre.weight"], w["visual.ln_pre.bias"])
    for i in range(cfg.vision_layers):
        x = block(x, w, f"visual.transformer.resblocks.{i}.", cfg.vision_heads, act=act)
    x = layer_norm(x[:, 0], w["visual.ln_post.weight"], w["visual.ln_post.bias"]) @ w["visual.proj"]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def encode_text(cfg, w, ids):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = w["token_embedding.weight"][ids] + w["positional_embedding"]
    mask = np.triu(np.full((cfg.context_length,) * 2, -np.inf), 1)
    for i in range(cfg.text_layers):
        x = block(x, w, f"transformer.resblocks.{i}.", cfg.text_heads, mask, act=activation(cfg))
    x = layer_norm(x, w["ln_final.weight"], w["ln_final.bias"])
    eot = (ids == cfg.eot_token_id).argmax(-1)
    x = x[np.arange(len(ids)), eot] @ w["text_projection"]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
