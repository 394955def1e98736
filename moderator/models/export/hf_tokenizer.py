"""A Hugging Face tokenizer as one ``tokenizers.Tokenizer`` (what ``tokenizer.json`` holds).

Fast tokenizers are taken as they are. SigLIP checkpoints ship only a SentencePiece model
(``spiece.model``), read by the slow ``SiglipTokenizer``: it is converted with transformers'
SentencePiece converter, and the slow tokenizer's own text handling (lower-casing, removing
punctuation, folding whitespace: big_vision's ``canonicalize_text``) is put in front as
normalisers; the result matches the slow tokenizer token for token (tests/export).
"""

from __future__ import annotations

import string
from pathlib import Path

from moderator.errors import ModelError


def _punctuation_class() -> str:
    return "[" + "".join("\\" + c if c in "[]\\^-" else c for c in string.punctuation) + "]"


def _from_siglip(slow):
    from tokenizers import Regex, normalizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter

    fast = SpmConverter(slow).converted()
    steps = [normalizers.Lowercase()] if getattr(slow, "do_lower_case", True) else []
    steps += [normalizers.Replace(Regex(_punctuation_class()), ""), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if fast.normalizer is not None:
        steps.append(fast.normalizer)
    fast.normalizer = normalizers.Sequence(steps)
    eos = slow.eos_token
    fast.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, slow.eos_token_id)])
    return fast


def load_tokenizer(path: str | Path):
    """``(tokenizers.Tokenizer, pad_token_id)`` of the tokenizer saved in ``path``.

    Raises:
        ModelError: it cannot be loaded, has no pad token, or has no fast form.
    """
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/ImportError for these
        raise ModelError(
            f"{path}: cannot load its tokenizer ({type(exc).__name__}: {exc}); SigLIP's needs sentencepiece and protobuf: pip install 'moderator[export]'"
        ) from exc
    if hf.pad_token_id is None:
        raise ModelError(f"{path}: the tokenizer has no pad token")
    if getattr(hf, "is_fast", False):
        return hf.backend_tokenizer, int(hf.pad_token_id)
    if type(hf).__name__ == "SiglipTokenizer":
        return _from_siglip(hf), int(hf.pad_token_id)
    raise ModelError(f"{path}: {type(hf).__name__} has no fast form to write as tokenizer.json (save the tokenizer with a tokenizer.json beside it)")
