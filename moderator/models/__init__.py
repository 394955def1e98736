"""Model directories: the manifest, the tokenizer, and building CLIP graphs as ONNX."""

from moderator.models.manifest import Manifest, Preprocess, load_manifest

__all__ = ["Manifest", "Preprocess", "load_manifest"]
