"""Text tokenisation through a ``tokenizer.json`` (Hugging Face tokenizers), as the model was trained.

The file carries the normaliser, pre-tokeniser, vocabulary and the post-processor that adds the
start/end tokens, so a real CLIP tokenizer and a project-built one load through the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderator.errors import ModelError


class TextTokenizer:
    """Turns texts into fixed-length ``int64`` id arrays ``[N, context_length]``."""

    def __init__(self, path: str | Path, context_length: int, pad_token_id: int = 0) -> None:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own Exception subclass for bad files
            raise ModelError(f"{path}: cannot load tokenizer: {exc}") from exc
        pad_token = tok.id_to_token(pad_token_id)
        if pad_token is None:
            raise ModelError(f"{path}: pad_token_id {pad_token_id} is not in the vocabulary")
        # Truncation reserves room for the special tokens the post-processor adds, so a long
        # text keeps its end-of-text token (the text tower pools at that position).
        tok.enable_truncation(max_length=context_length)
        tok.enable_padding(length=context_length, pad_id=pad_token_id, pad_token=pad_token)
        self._tok = tok
        self.context_length = context_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a sequence of texts, not one string")
        encodings = self._tok.encode_batch(list(texts))
        return np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), self.context_length)


def build_bpe_tokenizer(corpus: Sequence[str], vocab_size: int, special_tokens: Sequence[str]):
    """Train a byte-level BPE tokenizer (lower-cased, whitespace-folded) on ``corpus``.

    ``special_tokens`` are ``(pad, start-of-text, end-of-text)`` and get ids 0, 1, 2. Byte-level
    means every Unicode string tokenises (no unknown token), as with CLIP's own BPE.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    pad, sot, eot = special_tokens
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[pad, sot, eot],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{sot} $A {eot}", special_tokens=[(sot, tok.token_to_id(sot)), (eot, tok.token_to_id(eot))])
    return tok
