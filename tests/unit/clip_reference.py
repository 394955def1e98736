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


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def block(x, w, p, heads, mask=None):
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
    h = quick_gelu(h @ w[p + "mlp.c_fc.weight"].T + w[p + "mlp.c_fc.bias"])
    return x + h @ w[p + "mlp.c_proj.weight"].T + w[p + "mlp.c_proj.bias"]


def encode_image(cfg, w, pixels):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = pixels.astype(np.float64)
    n, ps = x.shape[0], cfg.patch_size
    g = cfg.image_size // ps
    patches = x.reshape(n, 3, g, ps, g, ps).transpose(0, 2, 4, 1, 3, 5).reshape(n, g * g, 3 * ps * ps)
    conv = w["visual.conv1.weight"].reshape(cfg.vision_width, -1)
    x = patches @ conv.T
    cls = np.broadcast_to(w["visual.class_embedding"], (n, 1, cfg.vision_width))
    x = np.concatenate([cls, x], axis=1) + w["visual.positional_embedding"]
    x = layer_norm(x, w["visual.ln_pre.weight"], w["visual.ln_pre.bias"])
    for i in range(cfg.vision_layers):
        x = block(x, w, f"visual.transformer.resblocks.{i}.", cfg.vision_heads)
    x = layer_norm(x[:, 0], w["visual.ln_post.weight"], w["visual.ln_post.bias"]) @ w["visual.proj"]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def encode_text(cfg, w, ids):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = w["token_embedding.weight"][ids] + w["positional_embedding"]
    mask = np.triu(np.full((cfg.context_length,) * 2, -np.inf), 1)
    for i in range(cfg.text_layers):
        x = block(x, w, f"transformer.resblocks.{i}.", cfg.text_heads, mask)
    x = layer_norm(x, w["ln_final.weight"], w["ln_final.bias"])
    eot = (ids == cfg.eot_token_id).argmax(-1)
    x = x[np.arange(len(ids)), eot] @ w["text_projection"]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
