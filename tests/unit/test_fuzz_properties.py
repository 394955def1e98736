"""Property tests (hypothesis) over everything that reads attacker-chosen bytes: message parsing,
the whole per-message path including verdict and dead-letter serialisation, image decoding and
policy loading. The example budget is ``MODERATOR_FUZZ_EXAMPLES`` (default 150 per property);
the coverage-guided atheris run (tests/fuzz/test_atheris.py) complements it with a time budget."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderator.errors import MessageError, PolicyError
from moderator.local.samples import COLOURS, draw, encode
from moderator.wire.input import ImageRequest, MessageLimits, Source, json_depth, parse_message
from tests.conftest import TINY_POLICY
from tests.fuzz import targets

EXAMPLES = int(os.environ.get("MODERATOR_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=bool(os.environ.get("CI"))
)
SRC = Source("in", 0, 7, None)
PNG = encode(draw("square", COLOURS["blue"], (32, 24)), "PNG")

# Text that includes lone surrogates and control characters, which JSON escapes can carry.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u2028"])
json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    json_leaves | st.sampled_from(["[", "]]", '{\\"[', "\\", '\\"']),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=40,
)
header_lists = st.lists(st.tuples(texts, st.binary(max_size=64) | st.none()), max_size=8)


@FUZZ
@given(value=st.binary(max_size=4096) | json_values.map(lambda v: json.dumps(v).encode()), headers=header_lists)
def test_parsing_returns_a_request_or_a_message_error(value, headers):
    try:
        req = parse_message(SRC, value, headers)
    except MessageError:
        return
    assert isinstance(req, ImageRequest)
    req.id.encode("utf-8")
    json.dumps(req.metadata, ensure_ascii=False, allow_nan=False).encode("utf-8")


@FUZZ
@given(value=json_values, escaped=st.booleans())
def test_json_depth_is_the_nesting_depth(value, escaped):
    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
    assert json_depth(text) == depth(value)
    assert json_depth(text, at_most=depth(value)) <= depth(value)


@FUZZ
@given(envelope_id=json_values, metadata=json_values, extra=st.dictionaries(texts, json_values, max_size=3))
def test_every_envelope_gets_exactly_one_valid_output(tiny_encoder, envelope_id, metadata, extra):
    body = json.dumps({**extra, "id": envelope_id, "image": {"base64": base64.b64encode(PNG).decode()}, "metadata": metadata}).encode()
    out = _pipeline(tiny_encoder).one(body)
    assert out.reason != "processing_error", out.headers["moderator-error-message"]
    if out.kind == "verdict":
        verdict = out.verdict()
        assert verdict["metadata"] == _expected_metadata(metadata), "metadata passes through (surrogates replaced)"
        assert verdict["id"] == _expected_id(envelope_id, out.offset)
    else:
        assert out.reason in ("invalid_message", "message_limit_exceeded"), out.headers


@FUZZ
@given(value=st.binary(max_size=2048), ctype=st.sampled_from([None, b"application/json", b"image/png", b"x"]), headers=header_lists)
def test_every_message_gets_exactly_one_output_and_nothing_escapes_the_boundary(tiny_encoder, value, ctype, headers):
    hs = list(headers) + ([("content-type", ctype)] if ctype else [])
    out = _pipeline(tiny_encoder).one(value, hs)
    assert out.reason != "processing_error", out.headers["moderator-error-message"]


@FUZZ
@given(data=st.data())
def test_decoding_mutated_images_raises_only_message_errors(data):
    fmt = data.draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]))
    blob = bytearray(encode(draw("circle", COLOURS["red"], (24, 16)), fmt))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(blob)))
    targets.image(bytes(blob[:cut]))


@FUZZ
@given(data=st.data())
def test_policy_loading_ends_in_a_policy_or_located_problems(tmp_path_factory, data):
    text = TINY_POLICY.read_text()
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(lines) - 1))
        choice = data.draw(st.sampled_from(["drop", "dup", "junk", "indent", "tag", "number"]))
        if choice == "drop":
            lines.pop(i)
        elif choice == "dup":
            lines.insert(i, lines[i])
        elif choice == "junk":
            lines[i] = data.draw(st.text(max_size=30)) + "\n"
        elif choice == "indent":
            lines[i] = "  " + lines[i]
        elif choice == "tag":
            lines[i] = lines[i].replace(": ", ": !!python/name:os.system ", 1)
        else:
            lines[i] = lines[i].replace("0.", "9" * data.draw(st.integers(1, 6000)) + ".", 1)
        if not lines:
            break
    path = tmp_path_factory.mktemp("policy") / "p.yaml"
    path.write_text("".join(lines), errors="surrogatepass")
    try:
        from moderator.policy import load_policy

        load_policy(path)
    except PolicyError as exc:
        assert str(exc), "problems are reported"


_PIPELINES: dict = {}


def _pipeline(encoder):
    from tests.fuzz.pipeline import Pipeline

    if id(encoder) not in _PIPELINES:
        _PIPELINES[id(encoder)] = Pipeline(encoder, TINY_POLICY, MessageLimits())
    return _PIPELINES[id(encoder)]


def _expected_id(envelope_id, offset: int) -> str:
    if envelope_id is None or envelope_id == "":
        return f"in/0/{offset}"
    return _expected_metadata({"id": str(envelope_id)})["id"]


def _expected_metadata(value):
    def clean(v):
        if isinstance(v, str):
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in v)
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {clean(k): clean(x) for k, x in v.items()}
        return v

    return clean(value) if isinstance(value, dict) else value


@pytest.mark.parametrize("target", targets.TARGETS)
def test_fuzz_seeds_pass_their_targets(target):
    for seed in targets.seeds(target):
        getattr(targets, target)(seed)
