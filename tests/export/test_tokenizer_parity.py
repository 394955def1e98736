"""tokenizer.json against open_clip's own tokenizers on a corpus of awkward strings."""

from __future__ import annotations

import numpy as np
import pytest

from moderator.models.export.clip_bpe import openai_clip_tokenizer, with_cleaning
from moderator.models.tokenizer import TextTokenizer

pytestmark = [pytest.mark.export]

AWKWARD = [
    "",
    " ",
    "a photo of a cat",
    "  leading and trailing spaces  ",
    "MiXeD CaSe Words",
    # Unicode: accents composed and decomposed, German, Turkish dotted I, symbols
    "ÉCOLE Ünïcödé naïve café",
    "cafe\u0301",
    "Straße İstanbul",
    "x² ½ ™ © ° µ",
    # emoji: single, skin tone, ZWJ family, flags
    "emoji 🔪🔫💊 ok",
    "👍🏽 👨‍👩‍👧 🇩🇪",
    "🔥🔥🔥",
    # scripts: CJK, mixed, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Thai, Korean
    "日本語のテキスト",
    "中文和English混合",
    "Ελληνικά",
    "русский текст",
    "עברית",
    "العربية",
    "हिन्दी",
    "ภาษาไทย",
    "한국어",
    # what ftfy fixes: ligatures, full/half width, curly quotes, controls, terminal escapes, C1
    "ﬁne ﬂow",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ",
    "ｶﾞｷﾞ",
    "“curly” ‘quotes’",
    "ctrl\x00\x07 chars",
    "\x1b[31mred\x1b[0m",
    "\x1c\x1d\x1e\x1fsep",
    "\x85nel \x96dash",
    # whitespace of every kind
    "tabs\tand\nnewlines\r\n",
    "a\u00a0b\u2003c\u3000d\u2028e",
    # HTML entities, once and twice escaped
    "&amp; &lt;b&gt; &quot;q&quot; &#39;s",
    "&amp;amp; &amp;lt;",
    "fish &amp; chips",
    # contractions, digits, punctuation, special-token text
    "don't it's we're I'll you'd they've I'm",
    "123 4.56 1,000,000",
    "!!!???...---",
    "<end_of_text> <start_of_text>",
    "under_score snake_case",
    "e-mail@example.com http://x.y/z?q=1",
    # longer than the context
    "a" * 400,
    " ".join(["word"] * 100),
    "🔪" * 100,
]


def _ours(tok, context: int, pad: int, tmp_path) -> TextTokenizer:
    tok.save(str(tmp_path / "tokenizer.json"))
    return TextTokenizer(tmp_path / "tokenizer.json", context, pad)


def _mismatches(ours: np.ndarray, ref: np.ndarray) -> list[str]:
    return [repr(AWKWARD[i]) for i in range(len(AWKWARD)) if not (ours[i] == ref[i]).all()]


def test_clip_bpe_tokenizes_exactly_as_open_clip(tmp_path):
    import open_clip

    ref = open_clip.get_tokenizer("ViT-B-32")  # SimpleTokenizer, clean="lower"
    ours = _ours(openai_clip_tokenizer(), 77, 0, tmp_path)
    assert _mismatches(ours(AWKWARD), ref(AWKWARD).numpy()) == []


def test_hf_tokenizer_with_canonicalize_cleaning_tokenizes_as_open_clip(tmp_path, siglip_tokenizer_dir):
    from open_clip.tokenizer import HFTokenizer
    from transformers import AutoTokenizer

    for clean in ("canonicalize", "whitespace"):
        ref = HFTokenizer(str(siglip_tokenizer_dir), context_length=16, clean=clean)
        hf = AutoTokenizer.from_pretrained(str(siglip_tokenizer_dir))
        ours = _ours(with_cleaning(hf.backend_tokenizer, clean), 16, hf.pad_token_id, tmp_path)
        assert _mismatches(ours(AWKWARD), ref(AWKWARD).numpy()) == [], clean


def test_what_cannot_be_rebuilt_is_the_documented_mojibake():
    """ftfy repairs text decoded with the wrong codec; a tokenizer.json cannot (docs/models.md)."""
    import ftfy

    mojibake = "cafÃ©"  # "café" encoded as UTF-8, decoded as Latin-1
    assert ftfy.fix_text(mojibake) == "café"
    tok = openai_clip_tokenizer()
    assert tok.normalizer.normalize_str(mojibake) == "cafã©"  # lower-cased, not repaired


def test_siglip_sentencepiece_tokenizer_converts_with_its_canonicalisation(tmp_path):
    from moderator.models.export.hf_tokenizer import load_tokenizer
    from tests.export.conftest import siglip_sentencepiece_tokenizer

    slow = siglip_sentencepiece_tokenizer(tmp_path / "siglip")
    assert not slow.is_fast and not (tmp_path / "siglip" / "tokenizer.json").exists()
    tok, pad = load_tokenizer(tmp_path / "siglip")
    ours = _ours(tok, 16, pad, tmp_path)(AWKWARD)
    ref = np.asarray(slow(AWKWARD, padding="max_length", max_length=16, truncation=True).input_ids)
    assert _mismatches(ours, ref) == []
