"""Build CLIP (ViT image tower + causal text transformer) as ONNX graphs from numpy weights.

Architecture is data: ``configs/<name>.json`` holds the widths, depths and sizes
(:func:`list_architectures`, :func:`load_architecture`). Weights are a flat ``dict`` keyed by
open_clip's state-dict names (``visual.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight``,
...; linear weights ``[out, in]`` as in torch), so an open_clip checkpoint converted to numpy
builds through this same code. Random weights (:func:`init_random_weights`) follow open_clip's
initialisation, which is what the tests and the benchmark use: no weights can be downloaded here.

Needs the ``onnx`` package (extra ``export``); serving never imports this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from moderator.errors import ModelError
from moderator.models.manifest import (
    FORMAT_VERSION,
    IMAGE_INPUT,
    IMAGE_OUTPUT,
    TEXT_INPUT,
    TEXT_OUTPUT,
    Manifest,
    Preprocess,
    write_manifest,
)
from moderator.models.weights import check_weights, init_random_weights

OPSET = 17
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
SPECIAL_TOKENS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>")


@dataclass(frozen=True)
class ClipConfig:
    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    act: Literal["quick_gelu", "gelu"] = "quick_gelu"
    eot_token_id: int = 2
    # Convolutional stem (hybrid ViT): output channels of 3x3 stride-2 convolutions, each followed
    # by the activation, run before the patch embedding, which then covers the rest of patch_size.
    # Empty (CLIP's plain ViT): the patch embedding sees pixels.
    vision_stem: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vision_stem", tuple(self.vision_stem))
        if self.image_size % self.patch_size:
            raise ModelError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.patch_size % 2 ** len(self.vision_stem):
            raise ModelError(f"patch_size {self.patch_size} is not a multiple of the stem's stride {2 ** len(self.vision_stem)}")
        for width, heads, tower in ((self.vision_width, self.vision_heads, "vision"), (self.text_width, self.text_heads, "text")):
            if width % heads:
                raise ModelError(f"{tower} width {width} is not divisible by {heads} heads")

    @property
    def patch_kernel(self) -> int:
        """The patch embedding's kernel and stride, after the stem's downsampling."""
        return self.patch_size // 2 ** len(self.vision_stem)

    @property
    def patch_in_channels(self) -> int:
        return self.vision_stem[-1] if self.vision_stem else 3


def list_architectures() -> list[str]:
    """Names of the architecture configs shipped with the package."""
    return sorted(p.name[: -len(".json")] for p in resources.files("moderator.models").joinpath("configs").iterdir() if p.name.endswith(".json"))


def load_architecture(name: str, **overrides: Any) -> ClipConfig:
    """Load ``configs/<name>.json``; unknown names fail with the list of known ones.

    Raises:
        ModelError: unknown name or inconsistent config.
    """
    known = list_architectures()
    if name not in known:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(known)}")
    data = json.loads(resources.files("moderator.models").joinpath("configs", f"{name}.json").read_text())
    data.update(overrides)
    return ClipConfig(**data)


# --- graphs --------------------------------------------------------------------------------------


class _Graph:
    """Accumulates ONNX nodes and initialisers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d scalars 0-d
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        from onnx import helper

        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0] + "_n", **attrs))
        return outs

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        y = self.op("MatMul", [x, self.const(weight.T.astype(np.float32), hint + ".w")])
        return self.op("Add", [y, self.const(bias, hint + ".b")]) if bias is not None else y

    def layer_norm(self, x: str, w: dict[str, np.ndarray], key: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.const(w[key + ".weight"], key + ".w"), self.const(w[key + ".bias"], key + ".b")],
            axis=-1,
            epsilon=1e-5,
        )

    def l2_normalize(self, x: str) -> str:
        norm = self.op("ReduceL2", [x], axes=[-1], keepdims=1)
        norm = self.op("Max", [norm, self.const(np.asarray(1e-12, np.float32), "eps")])
        return self.op("Div", [x, norm])


def _act(g: _Graph, x: str, kind: str) -> str:
    if kind == "quick_gelu":
        return g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [x, g.const(np.asarray(1.702, np.float32), "qg")])])])
    half = g.op("Mul", [x, g.const(np.asarray(0.5, np.float32), "half")])
    erf = g.op("Erf", [g.op("Div", [x, g.const(np.asarray(math.sqrt(2.0), np.float32), "sqrt2")])])
    return g.op("Mul", [half, g.op("Add", [erf, g.const(np.asarray(1.0, np.float32), "one")])])


def _block(g: _Graph, x: str, w: dict[str, np.ndarray], p: str, width: int, heads: int, act: str, mask: str | None) -> str:
    hd = width // heads
    h = g.layer_norm(x, w, p + "ln_1")
    qkv = g.linear(h, w[p + "attn.in_proj_weight"], w[p + "attn.in_proj_bias"], p + "attn.in_proj")
    q, k, v = g.ops("Split", [qkv, g.const(np.asarray([width] * 3, np.int64), "split")], 3, axis=-1)
    heads_shape = g.const(np.asarray([0, 0, heads, hd], np.int64), "heads_shape")
    q = g.op("Transpose", [g.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
    q = g.op("Mul", [q, g.const(np.asarray(hd**-0.5, np.float32), "attn_scale")])
    scores = g.op("MatMul", [q, k])
    if mask is not None:
        scores = g.op("Add", [scores, mask])
    attn = g.op("Softmax", [scores], axis=-1)
    o = g.op("Transpose", [g.op("MatMul", [attn, v])], perm=[0, 2, 1, 3])
    o = g.op("Reshape", [o, g.const(np.asarray([0, 0, width], np.int64), "merge_shape")])
    o = g.linear(o, w[p + "attn.out_proj.weight"], w[p + "attn.out_proj.bias"], p + "attn.out_proj")
    x = g.op("Add", [x, o])
    h = g.layer_norm(x, w, p + "ln_2")
    h = g.linear(h, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"], p + "mlp.c_fc")
    h = g.linear(_act(g, h, act), w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"], p + "mlp.c_proj")
    return g.op("Add", [x, h])


def _model(g: _Graph, inp: Any, out_name: str, out: str, embed_dim: int, graph_name: str) -> Any:
    from onnx import TensorProto, helper

    g.nodes.append(helper.make_node("Identity", [out], [out_name], name=out_name))
    output = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", embed_dim])
    graph = helper.make_graph(g.nodes, graph_name, [inp], [output], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="moderator")
    model.ir_version = 8
    return model


def build_image_graph(cfg: ClipConfig, w: dict[str, np.ndarray]) -> Any:
    """The image tower: ``pixel_values [N,3,S,S]`` -> L2-normalised ``image_embeds [N,D]``."""
    from onnx import TensorProto, helper

    _require_onnx()
    g = _Graph()
    vw, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
    inp = helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, ["batch", 3, cfg.image_size, cfg.image_size])
    x = IMAGE_INPUT
    for i in range(len(cfg.vision_stem)):
        x = g.op(
            "Conv",
            [x, g.const(w[f"visual.stem.{i}.weight"], "stem"), g.const(w[f"visual.stem.{i}.bias"], "stem_b")],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
        x = _act(g, x, cfg.act)
    x = g.op("Conv", [x, g.const(w["visual.conv1.weight"], "conv1")], kernel_shape=[cfg.patch_kernel] * 2, strides=[cfg.patch_kernel] * 2)
    x = g.op("Reshape", [x, g.const(np.asarray([0, vw, grid * grid], np.int64), "patches")])
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    batch = g.op("Slice", [g.op("Shape", [x]), g.const(np.asarray([0], np.int64), "s0"), g.const(np.asarray([1], np.int64), "s1")])
    cls_shape = g.op("Concat", [batch, g.const(np.asarray([1, vw], np.int64), "cls_tail")], axis=0)
    cls = g.op("Expand", [g.const(w["visual.class_embedding"].reshape(1, 1, vw), "class_embedding"), cls_shape])
    x = g.op("Concat", [cls, x], axis=1)
    x = g.op("Add", [x, g.const(w["visual.positional_embedding"], "visual_pos")])
    x = g.layer_norm(x, w, "visual.ln_pre")
    for i in range(cfg.vision_layers):
        x = _block(g, x, w, f"visual.transformer.resblocks.{i}.", vw, cfg.vision_heads, cfg.act, None)
    x = g.op("Gather", [x, g.const(np.asarray(0, np.int64), "cls_index")], axis=1)
    x = g.layer_norm(x, w, "visual.ln_post")
    x = g.op("MatMul", [x, g.const(w["visual.proj"], "visual_proj")])
    return _model(g, inp, IMAGE_OUTPUT, g.l2_normalize(x), cfg.embed_dim, "clip_image_encoder")


def build_text_graph(cfg: ClipConfig, w: dict[str, np.ndarray]) -> Any:
    """The text tower: ``input_ids [N,L]`` -> L2-normalised ``text_embeds [N,D]``, pooled at the
    first end-of-text token (``cfg.eot_token_id``)."""
    from onnx import TensorProto, helper

    _require_onnx()
    g = _Graph()
    tw, length = cfg.text_width, cfg.context_length
    inp = helper.make_tensor_value_info(TEXT_INPUT, TensorProto.INT64, ["batch", length])
    x = g.op("Gather", [g.const(w["token_embedding.weight"], "token_embedding"), TEXT_INPUT], axis=0)
    x = g.op("Add", [x, g.const(w["positional_embedding"], "text_pos")])
    mask = g.const(np.triu(np.full((length, length), -np.inf, np.float32), 1), "causal_mask")
    for i in range(cfg.text_layers):
        x = _block(g, x, w, f"transformer.resblocks.{i}.", tw, cfg.text_heads, cfg.act, mask)
    x = g.layer_norm(x, w, "ln_final")
    is_eot = g.op("Cast", [g.op("Equal", [TEXT_INPUT, g.const(np.asarray(cfg.eot_token_id, np.int64), "eot")])], to=TensorProto.FLOAT)
    pos = g.op("ArgMax", [is_eot], axis=1, keepdims=1)  # first EOT: [N,1]
    idx = g.op("Unsqueeze", [pos, g.const(np.asarray([2], np.int64), "ax2")])  # [N,1,1]
    batch = g.op("Slice", [g.op("Shape", [x]), g.const(np.asarray([0], np.int64), "s0"), g.const(np.asarray([1], np.int64), "s1")])
    idx = g.op("Expand", [idx, g.op("Concat", [batch, g.const(np.asarray([1, tw], np.int64), "pool_tail")], axis=0)])
    pooled = g.op("Squeeze", [g.op("GatherElements", [x, idx], axis=1), g.const(np.asarray([1], np.int64), "ax1")])
    x = g.op("MatMul", [pooled, g.const(w["text_projection"], "text_projection")])
    return _model(g, inp, TEXT_OUTPUT, g.l2_normalize(x), cfg.embed_dim, "clip_text_encoder")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ModelError("building ONNX graphs needs the 'onnx' package: pip install 'moderator[export]'") from exc


# --- model directory -----------------------------------------------------------------------------


def tokenizer_corpus() -> list[str]:
    """A small English corpus for the random models' tokenizer (moderation-flavoured words)."""
    objects = [
        "knife",
        "dagger",
        "gun",
        "pistol",
        "rifle",
        "syringe",
        "pill",
        "pills",
        "bottle",
        "beer",
        "wine",
        "cigarette",
        "smoke",
        "fire",
        "flame",
        "blood",
        "tree",
        "house",
        "car",
        "flower",
        "cat",
        "dog",
        "cup",
        "ball",
        "sun",
        "person",
        "child",
        "beach",
        "food",
        "text",
        "logo",
        "screenshot",
        "weapon",
        "drug",
        "drugs",
        "alcohol",
        "violence",
        "nudity",
        "explicit",
        "safe",
        "photo",
        "drawing",
        "picture",
        "image",
    ]
    adjectives = [
        "a",
        "an",
        "the",
        "red",
        "green",
        "blue",
        "white",
        "black",
        "yellow",
        "small",
        "large",
        "two",
        "three",
        "of",
        "on",
        "with",
        "in",
        "and",
        "photo",
        "close-up",
        "blurry",
        "bright",
        "dark",
    ]
    corpus = []
    for i, obj in enumerate(objects):
        for j, adj in enumerate(adjectives):
            corpus.append(f"a photo of {adj} {obj} {objects[(i + j) % len(objects)]}")
    return corpus


def write_model_dir(
    out: str | Path,
    cfg: ClipConfig,
    weights: dict[str, np.ndarray],
    *,
    name: str,
    architecture: str,
    tokenizer: Any,
    preprocess: Preprocess | None = None,
    notes: str = "",
) -> Manifest:
    """Write ``image_encoder.onnx``, ``text_encoder.onnx``, ``tokenizer.json`` and ``manifest.json``.

    Raises:
        ModelError: the weights do not fit ``cfg`` or the tokenizer does not fit the vocabulary.
    """
    import onnx

    check_weights(cfg, weights)
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise ModelError(f"tokenizer has {tokenizer.get_vocab_size()} tokens, the text tower only {cfg.vocab_size}")
    if tokenizer.token_to_id(SPECIAL_TOKENS[2]) != cfg.eot_token_id:
        raise ModelError(f"tokenizer's {SPECIAL_TOKENS[2]} id differs from eot_token_id {cfg.eot_token_id}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(build_image_graph(cfg, weights), root / "image_encoder.onnx")
    onnx.save(build_text_graph(cfg, weights), root / "text_encoder.onnx")
    tokenizer.save(str(root / "tokenizer.json"))
    preprocess = preprocess or Preprocess(image_size=cfg.image_size, mean=OPENAI_MEAN, std=OPENAI_STD)
    if preprocess.image_size != cfg.image_size:
        raise ModelError(f"preprocess image_size {preprocess.image_size} differs from the graph's {cfg.image_size}")

    return write_manifest(
        root,
        image_encoder="image_encoder.onnx",
        text_encoder="text_encoder.onnx",
        tokenizer="tokenizer.json",
        format_version=FORMAT_VERSION,
        name=name,
        family="clip",
        architecture=architecture,
        embed_dim=cfg.embed_dim,
        preprocess=preprocess,
        context_length=cfg.context_length,
        pad_token_id=tokenizer.token_to_id(SPECIAL_TOKENS[0]),
        logit_scale=float(np.exp(weights.get("logit_scale", np.asarray(math.log(100.0))))),
        opset=OPSET,
        notes=notes,
    )


RANDOM_NOTES = (
    "RANDOM WEIGHTS. This model exists to exercise the real serving path (same file format and graph "
    "contract as exported CLIP models); its embeddings carry no meaning and every decision it makes is arbitrary."
)


def build_random_model(out: str | Path, architecture: str = "tiny", seed: int = 0, name: str | None = None) -> Manifest:
    """A random-weight CLIP of a named architecture, written as a model directory."""
    from moderator.models.tokenizer import build_bpe_tokenizer

    cfg = load_architecture(architecture)
    tokenizer = build_bpe_tokenizer(tokenizer_corpus(), vocab_size=min(cfg.vocab_size, 1024), special_tokens=SPECIAL_TOKENS)
    return write_model_dir(
        out,
        cfg,
        init_random_weights(cfg, seed),
        name=name or f"{architecture}-random",
        architecture=architecture,
        tokenizer=tokenizer,
        notes=RANDOM_NOTES,
    )
