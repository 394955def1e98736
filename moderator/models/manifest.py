"""The model directory contract: ``manifest.json`` beside the ONNX graphs and ``tokenizer.json``.

Graph contract (every backend relies on it):

- ``image_encoder.onnx``: input ``pixel_values`` float32 ``[N, 3, S, S]`` normalised with the
  manifest's mean/std; output ``image_embeds`` float32 ``[N, D]``, L2-normalised.
- ``text_encoder.onnx``: input ``input_ids`` int64 ``[N, context_length]``; output
  ``text_embeds`` float32 ``[N, D]``, L2-normalised.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moderator.errors import ModelError
from moderator.files import FileRefused, read_regular_file

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1024 * 1024  # a few KB: names, hashes, figures
FORMAT_VERSION = 1
IMAGE_INPUT, IMAGE_OUTPUT = "pixel_values", "image_embeds"
TEXT_INPUT, TEXT_OUTPUT = "input_ids", "text_embeds"


class Preprocess(BaseModel):
    """Image preprocessing, identical for training and serving (open_clip's PreprocessCfg)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(ge=8, le=4096)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    resize_mode: Literal["shortest", "longest", "squash"] = "shortest"
    fill_color: int = Field(0, ge=0, le=255)
    # What a service should score of a frame that is not square with this model, when
    # media.crops is auto: "centre" for a model that has never seen objects cut by a frame's edge
    # (the pictogram model: squares along a wide picture cut objects, and it takes the pieces for
    # other things), None for the service's choice (cover).
    crops: Literal["centre", "cover"] | None = None

    @model_validator(mode="after")
    def _std_positive(self) -> Preprocess:
        if any(s <= 0 for s in self.std):
            raise ValueError("std components must be positive")
        return self


class ModelFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        # A model directory may come from anywhere (a registry, a colleague's export): the files
        # it names are its own, never /etc/... or ../../ another directory's.
        parts = PurePosixPath(value).parts
        if value.startswith("/") or "\\" in value or "\x00" in value or not parts or any(p in ("..", ".") for p in parts):
            raise ValueError(f"a file of the model directory, as a relative path without '..', not {value[:80]!r}")
        return value


class Agreement(BaseModel):
    """How closely a variant's embeddings follow fp32's, measured when the variant was written
    (``moderator models add-variant`` / ``measure``) on models.inspect's fixed probe set: cosine
    similarity per image and per text, minimum and mean. ``precision: auto`` serves only variants
    whose minimums reach ``encoder.auto_min_cosine``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_cosine_min: float = Field(ge=-1, le=1)
    image_cosine_mean: float = Field(ge=-1, le=1)
    text_cosine_min: float = Field(ge=-1, le=1)
    text_cosine_mean: float = Field(ge=-1, le=1)
    probe: str = Field(description="What was measured, e.g. '16 pictograms (seed 0), 6 texts'.")

    @property
    def worst(self) -> float:
        return min(self.image_cosine_min, self.text_cosine_min)


class Variant(BaseModel):
    """One precision of the encoders (fp32 always; int8/fp16 when exported)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_encoder: ModelFile
    text_encoder: ModelFile
    agreement: Agreement | None = Field(None, description="Against fp32 (None for fp32, and for variants written before it was recorded).")


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    family: Literal["clip", "siglip"] = "clip"
    architecture: str = Field(description="Config name the graphs were built from, e.g. vit-b-32.")
    embed_dim: int = Field(ge=1)
    preprocess: Preprocess
    context_length: int = Field(ge=2)
    pad_token_id: int = 0
    logit_scale: float = Field(100.0, gt=0, description="exp(learned log scale): the softmax temperature's inverse.")
    logit_bias: float | None = None
    opset: int
    tokenizer: ModelFile
    variants: dict[str, Variant]
    source: str = Field("", description="Where the weights came from, e.g. 'open_clip ViT-B-32 pretrained=openai'.")
    notes: str = ""

    @model_validator(mode="after")
    def _has_fp32(self) -> Manifest:
        if "fp32" not in self.variants:
            raise ValueError("variants must include fp32")
        return self

    def checksum(self) -> str:
        """Short content hash of the whole model (tokenizer and every graph), for verdicts."""
        digest = hashlib.sha256(self.tokenizer.sha256.encode())
        for name in sorted(self.variants):
            v = self.variants[name]
            digest.update(f"{name}:{v.image_encoder.sha256}:{v.text_encoder.sha256}".encode())
        return digest.hexdigest()[:16]


def write_manifest(root: Path, *, image_encoder: str, text_encoder: str, tokenizer: str, **fields) -> Manifest:
    """Checksum the named files under ``root``, validate and write ``manifest.json`` (fp32 variant)."""

    def entry(fname: str) -> ModelFile:
        return ModelFile(path=fname, sha256=sha256_file(root / fname))

    try:
        manifest = Manifest(
            tokenizer=entry(tokenizer),
            variants={"fp32": Variant(image_encoder=entry(image_encoder), text_encoder=entry(text_encoder))},
            **fields,
        )
    except ValidationError as exc:
        raise ModelError(f"{root}: the manifest would be invalid: {exc}") from exc
    save_manifest(root, manifest)
    return manifest


def save_manifest(root: Path, manifest: Manifest) -> None:
    (Path(root) / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(model_dir: str | Path, *, verify: bool = True, graphs: bool = True) -> Manifest:
    """Read and validate ``model_dir/manifest.json``; with ``verify``, check every file's SHA-256.

    ``graphs=False`` requires only the manifest and the tokenizer (remote backends: the graphs
    live on the server).

    Raises:
        ModelError: the directory, manifest or a file is missing, invalid or corrupt.
    """
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"{root} is not a model directory: {MANIFEST_NAME} not found")
    try:
        manifest = Manifest.model_validate(json.loads(read_regular_file(path, MAX_MANIFEST_BYTES, "manifest")))
    except (ValueError, ValidationError, RecursionError, FileRefused) as exc:
        raise ModelError(f"{path}: invalid manifest: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ModelError(f"{path}: format_version {manifest.format_version} is not supported (expected {FORMAT_VERSION})")
    files = [manifest.tokenizer]
    for variant in manifest.variants.values() if graphs else ():
        files += [variant.image_encoder, variant.text_encoder]
    for f in files:
        fp = root / f.path
        if not fp.is_file():
            raise ModelError(f"{root}: {f.path} named in the manifest is missing")
        if verify and sha256_file(fp) != f.sha256:
            raise ModelError(f"{root}: {f.path} does not match its SHA-256 in the manifest (corrupt or replaced)")
    return manifest
