"""Decoding untrusted image bytes safely and preprocessing them exactly as the model expects."""

from moderator.media.decode import DecodeLimits, decode_image
from moderator.media.preprocess import Preprocessor

__all__ = ["DecodeLimits", "Preprocessor", "decode_image"]
