"""CLIP's byte-pair tokenizer (open_clip's ``SimpleTokenizer``) as a ``tokenizer.json``.

open_clip cleans text with ftfy and ``html.unescape`` before its regex and BPE. A
``tokenizer.json`` cannot call Python, so the cleaning is rebuilt from ftfy's own tables as
``tokenizers`` normalisers: terminal escapes, C1 controls read as cp1252, Latin ligatures,
full/half-width forms, curly quotes, control characters, NFC, common HTML entities, whitespace
folding and lower-casing. What cannot be rebuilt: ftfy's repair of mojibake (text decoded with
the wrong codec) and HTML entities outside :data:`HTML_ENTITIES`; policy prompts are written by
people, so neither occurs in practice. The parity test runs both tokenizers over a corpus of
awkward strings.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from moderator.errors import ModelError

SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip's pre-tokeniser pattern (its special tokens are matched as added tokens here).
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The HTML entities rebuilt; html.unescape knows about 2,000 more, rare in prompts.
HTML_ENTITIES = {
    "&lt;": "<",
    "&gt;": ">",
    "&quot;": '"',
    "&#39;": "'",
    "&#x27;": "'",
    "&apos;": "'",
    "&nbsp;": "\xa0",
    "&amp;": "&",
}  # &amp; last: one pass unescapes one level, as html.unescape


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def cleaning_normalizers(clean: str) -> list:
    """open_clip's text cleaning (``clean`` = "lower", "whitespace" or "canonicalize") as normalisers."""
    import string

    from tokenizers import Regex, normalizers

    if clean not in ("lower", "whitespace", "canonicalize"):
        raise ModelError(f"open_clip text cleaning {clean!r} is not supported (lower, whitespace, canonicalize)")

    try:
        from ftfy import chardata
    except ImportError as exc:
        raise ModelError("building CLIP's tokenizer needs ftfy (installed with open_clip): pip install 'moderator[export]'") from exc

    def literal(mapping: dict[str, str]) -> list:
        return [normalizers.Replace(k, v) for k, v in mapping.items()]

    def entities() -> list:
        return literal(HTML_ENTITIES)

    c1 = {}
    for b in range(0x80, 0xA0):
        try:
            c1[chr(b)] = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            continue
    steps = [
        *entities(),  # ftfy's unescape_html
        normalizers.Replace(Regex(r"\x1b\[((?:\d|;)*)([a-zA-Z])"), ""),  # remove_terminal_escapes
        *literal(c1),  # fix_c1_controls
        *literal({chr(k): v for k, v in chardata.LIGATURES.items()}),
        *literal({chr(k): v for k, v in chardata.WIDTH_MAP.items()}),
        normalizers.Replace(Regex(chardata.SINGLE_QUOTE_RE.pattern), "'"),
        normalizers.Replace(Regex(chardata.DOUBLE_QUOTE_RE.pattern), '"'),
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{k:x}}}" for k in sorted(chardata.CONTROL_CHARS)) + "]"), ""),
        normalizers.NFC(),
        *entities(),
        *entities(),  # basic_clean's html.unescape(html.unescape(...))
    ]
    if clean == "canonicalize":  # big_vision's canonicalize_text: no punctuation, lower case
        punctuation = "".join("\\" + c if c in "[]\\^-" else c for c in string.punctuation)
        steps += [normalizers.Replace("_", " "), normalizers.Replace(Regex(f"[{punctuation}]"), ""), normalizers.Lowercase()]
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if clean == "lower":
        steps.append(normalizers.Lowercase())
    return steps


def openai_clip_tokenizer(bpe_path: str | Path | None = None, *, clean: str = "lower"):
    """open_clip's ``SimpleTokenizer`` (49,408 tokens) as a ``tokenizers.Tokenizer``.

    ``bpe_path`` defaults to the merges file bundled with open_clip.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if bpe_path is None:
        try:
            from open_clip.tokenizer import default_bpe
        except ImportError as exc:
            raise ModelError("CLIP's BPE merges come with open_clip: pip install 'moderator[export]'") from exc
        bpe_path = default_bpe()
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [(a, b) for a, b in (m.split() for m in lines)]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    ranks = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.BPE(ranks, merges, end_of_word_suffix="</w>", continuing_subword_prefix="", fuse_unk=False))
    tok.add_special_tokens([AddedToken(SOT, special=True, normalized=False), AddedToken(EOT, special=True, normalized=False)])
    tok.normalizer = normalizers.Sequence(cleaning_normalizers(clean))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    sot, eot = tok.token_to_id(SOT), tok.token_to_id(EOT)
    if (sot, eot) != (len(vocab), len(vocab) + 1):
        raise ModelError(f"CLIP tokenizer: special tokens got ids {sot}, {eot}, expected {len(vocab)}, {len(vocab) + 1}")
    tok.post_processor = processors.TemplateProcessing(single=f"{SOT} $A {EOT}", special_tokens=[(SOT, sot), (EOT, eot)])
    return tok


def with_cleaning(tokenizer, clean: str):
    """A Hugging Face tokenizer with open_clip's cleaning in front of its own normaliser (HFTokenizer)."""
    from tokenizers import normalizers

    steps = cleaning_normalizers(clean)
    if tokenizer.normalizer is not None:
        steps.append(tokenizer.normalizer)
    tokenizer.normalizer = normalizers.Sequence(steps)
    return tokenizer
