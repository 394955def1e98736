#!/usr/bin/env python
"""Train the default model: a small CLIP on procedural pictograms, exported to models/default/.

    pip install -e '.[export]'            # torch comes with the export extra; serving never imports it
    python models/default/train.py        # ~30 minutes on 2 CPU cores (28 of them training: time_budget_s in config.json)
    python models/default/train.py --out /tmp/trial --max-steps 400   # a trial that leaves these files alone

Steps:
1. Generate captioned pictograms (moderator.pictograms), encoded as JPEG and decoded and
   preprocessed by the service's own code. Training never sees the held-out colour x object combos.
   ``nothing_share`` of them are captioned pictures of none of the classes (solid colours,
   gradients, noise, shapes, textures, blurred fields: moderator.pictograms.nothing), so that the
   model has a place for the open set and the policy a contrast that takes it.
2. Train a tokenizer (byte-level BPE) on the training captions; save it as tokenizer.json.
3. Train CLIP (ViT image tower, causal text transformer; symmetric InfoNCE with a learnable
   temperature, as in the CLIP paper, every true caption in the batch a positive) with AdamW and a
   cosine schedule, on a time budget.
4. Export through the project's exporter (moderator.models.builder.write_model_dir) with fp32
   and int8 variants, check ONNX against torch, write metrics.json.
5. Calibrate policies/default.yaml's thresholds on a separate split.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from moderator.media.preprocess import Preprocessor, normalize  # noqa: E402
from moderator.models.builder import OPENAI_MEAN, OPENAI_STD, SPECIAL_TOKENS, load_architecture, write_model_dir  # noqa: E402
from moderator.models.manifest import Preprocess  # noqa: E402
from moderator.models.tokenizer import TextTokenizer, build_bpe_tokenizer  # noqa: E402
from moderator.pictograms.dataset import caption_facts, captions_fit, generate, to_pixels  # noqa: E402

# --- model: open_clip's module and parameter names, the builder's arithmetic ----------------------


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.normal_(self.in_proj_weight, std=width**-0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, t, w = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(w, dim=-1)
        q, k, v = (y.reshape(n, t, self.heads, w // self.heads).transpose(1, 2) for y in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(o.transpose(1, 2).reshape(n, t, w))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        w, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
        chans = (3, *cfg.vision_stem)
        self.stem = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in zip(chans, chans[1:]))  # hybrid ViT's stem
        self.conv1 = nn.Conv2d(chans[-1], w, cfg.patch_kernel, cfg.patch_kernel, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, cfg.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, cfg.embed_dim) * w**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.stem:
            x = F.gelu(conv(x))
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = Visual(cfg)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.text_width) * 0.01)
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.randn(cfg.text_width, cfg.embed_dim) * cfg.text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("mask", torch.triu(torch.full((cfg.context_length,) * 2, float("-inf")), 1), persistent=False)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(x), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.token_embedding(ids) + self.positional_embedding, self.mask)
        x = self.ln_final(x)
        eot = (ids == self.cfg.eot_token_id).int().argmax(dim=-1)  # first end-of-text token
        return F.normalize(x[torch.arange(len(ids)), eot] @ self.text_projection, dim=-1)


# --- data ----------------------------------------------------------------------------------------


def _make(args):
    n, split, seed, pre_cfg, nothing_share = args
    samples = generate(n, split, seed, nothing_share)
    return to_pixels(samples, Preprocessor(Preprocess(**pre_cfg))), [s.caption for s in samples], caption_facts(samples)


def dataset(n: int, split: str, seed: int, pre: Preprocess, workers: int = 2, nothing_share: float = 0.0):
    """Pixels, captions and caption facts (moderator.pictograms.dataset.caption_facts); with
    ``nothing_share``, that share are captioned pictures of nothing (moderator.pictograms.nothing)."""
    chunks = [(n // workers + (i < n % workers), split, seed * 100 + i, pre.model_dump(), nothing_share) for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_make, chunks))
    return np.concatenate([p[0] for p in parts]), sum((p[1] for p in parts), []), np.concatenate([p[2] for p in parts])


def contrastive_loss(logits: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over ``logits [image, caption]``, with every caption that truly
    describes a picture as a positive (``fit``, bool, its diagonal all true) instead of its own
    caption only. Generated captions repeat ("a photo of a knife"): in a batch of 256 a picture has
    ~3.5 other true captions, in the batch of 64 used now ~0.9, and CLIP's one-hot targets would
    call them negatives. With an identity ``fit`` this is CLIP's loss exactly."""
    targets = fit.float()
    to_text = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    to_image = -(targets.T / targets.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (to_text + to_image) / 2


# --- training ------------------------------------------------------------------------------------


def train(out: Path, overrides: dict, cfg_path: Path = HERE / "config.json") -> None:
    conf = {**json.loads(cfg_path.read_text()), **overrides}
    torch.manual_seed(conf["seed"])
    arch = load_architecture(conf["architecture"])
    # crops: centre: trained on whole pictograms, it takes objects cut by a square's edge for other
    # classes (README.md, "What it cannot do"); media.crops: auto follows it.
    pre = Preprocess(image_size=arch.image_size, mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic", resize_mode="shortest", crops="centre")
    t0 = time.time()
    pixels, captions, facts = dataset(conf["train_samples"], "train", conf["seed"], pre, nothing_share=conf["nothing_share"])
    print(f"data: {len(captions)} training pictures ({int((facts[:, 1] == 0).sum())} of nothing) in {time.time() - t0:.0f}s", flush=True)

    tokenizer = build_bpe_tokenizer(captions, conf["tokenizer_vocab"], SPECIAL_TOKENS)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = out / "tokenizer.build.json"
    tokenizer.save(str(tok_path))
    ids = torch.from_numpy(TextTokenizer(tok_path, arch.context_length)(captions))
    images = torch.from_numpy(normalize(pixels, pre.mean, pre.std))
    print(f"tokenizer: {tokenizer.get_vocab_size()} tokens", flush=True)

    model = CLIP(arch)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": conf["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}], lr=conf["lr"])
    steps, bs, warm, budget = conf["max_steps"], conf["batch_size"], conf["warmup_steps"], conf["time_budget_s"]
    g = torch.Generator().manual_seed(conf["seed"])
    start, step = time.time(), 0
    model.train()
    while step < steps and time.time() - start < budget:
        # Warm-up, then a cosine over whichever runs out first, the steps or the time budget, so a
        # slower machine ends on a decayed learning rate too (with fewer steps, in training.json).
        progress = max(step / steps, (time.time() - start) / budget)
        lr = conf["lr"] * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(images), (bs,), generator=g)
        img_e, txt_e = model.encode_image(images[idx]), model.encode_text(ids[idx])
        logits = model.logit_scale.exp().clamp(max=100) * img_e @ txt_e.T
        batch_facts = facts[idx.numpy()]
        loss = contrastive_loss(logits, torch.from_numpy(captions_fit(batch_facts, batch_facts)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
    train_s = time.time() - start
    print(f"trained {step} steps in {train_s:.0f}s", flush=True)
    export(
        model,
        arch,
        pre,
        tok_path,
        conf,
        out,
        {"train_steps": step, "train_seconds": round(train_s), "train_samples": len(captions), "data_seconds": round(start - t0)},
    )


def export(model: CLIP, arch, pre: Preprocess, tok_path: Path, conf: dict, out: Path, info: dict) -> None:
    from tokenizers import Tokenizer

    from moderator.encoders.onnx import OnnxEncoder
    from moderator.models.quantize import add_int8_variant

    model.eval()
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    notes = (
        "Trained by models/default/train.py on procedural pictograms (moderator.pictograms). It knows those "
        "15 pictogram classes only; serve an exported real CLIP model for real images. See README.md here."
    )
    write_model_dir(
        out,
        arch,
        weights,
        name="pictoclip-default",
        architecture=conf["architecture"],
        tokenizer=Tokenizer.from_file(str(tok_path)),
        preprocess=pre,
        notes=notes,
    )
    tok_path.unlink()
    add_int8_variant(out)

    # ONNX against torch on held-out pictograms and captions.
    enc = OnnxEncoder(out)
    px, caps, _ = dataset(64, "test", 99, pre, workers=1)
    with torch.no_grad():
        t_img = model.encode_image(torch.from_numpy(normalize(px, pre.mean, pre.std))).numpy()
        t_txt = model.encode_text(torch.from_numpy(enc.tokenize(caps))).numpy()
    info["onnx_vs_torch_max_abs_diff"] = {
        "image": float(np.abs(enc.encode_images(px) - t_img).max()),
        "text": float(np.abs(enc.encode_texts(caps) - t_txt).max()),
    }
    print("onnx vs torch:", info["onnx_vs_torch_max_abs_diff"], flush=True)
    (out / "training.json").write_text(json.dumps({**info, "config": conf}, indent=2) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Train the default model (settings in config.json).")
    parser.add_argument("--out", type=Path, default=HERE, help="model directory to write (default: models/default)")
    parser.add_argument("--max-steps", type=int, help="override config.json's max_steps (a quick trial run)")
    parser.add_argument("--time-budget-s", type=int, help="override config.json's time_budget_s")
    args = parser.parse_args()
    train(args.out, {k: v for k, v in (("max_steps", args.max_steps), ("time_budget_s", args.time_budget_s)) if v is not None})
