"""Hostile messages through the worker's whole per-message path (parse, decode, encode, score,
verdict and dead-letter serialisation): each gets exactly one output, the others in its batch
are unaffected, and nothing escapes the per-message fault boundary."""

from __future__ import annotations

import base64
import json

import pytest

from moderator.local.samples import COLOURS, draw, encode, hostile_messages
from moderator.wire.input import MessageLimits, json_depth
from tests.conftest import TINY_POLICY
from tests.fuzz.pipeline import Pipeline

GOOD = encode(draw("square", COLOURS["blue"], (64, 48)), "PNG")


@pytest.fixture(scope="module")
def pipeline(tiny_encoder):
    return Pipeline(tiny_encoder, TINY_POLICY)


@pytest.mark.parametrize("sample", hostile_messages(), ids=lambda s: s.description)
def test_each_hostile_message_gets_its_one_output_between_good_ones(pipeline, sample):
    good = [(b"k", GOOD, [("moderation-id", f"good-{i}".encode())]) for i in range(2)]
    outputs = pipeline.run([good[0], (sample.key, sample.value, sample.headers), good[1]])
    assert len(outputs) == 3, [o.kind for o in outputs]
    before, out, after = outputs
    assert before.kind == after.kind == "verdict", "messages around the hostile one are scored"
    assert before.verdict()["id"] == "good-0" and after.verdict()["id"] == "good-1"
    if sample.expect == "verdict":
        assert out.kind == "verdict", f"{sample.description}: dead letter {out.headers.get('moderator-error-message')}"
        verdict = out.verdict()
        assert verdict["id"] == sample.id
        json.dumps(verdict, ensure_ascii=False).encode("utf-8")  # valid UTF-8 all the way down
    else:
        assert out.kind == "dead_letter" and out.reason == sample.expect, (sample.description, out.headers)
        assert out.headers["moderator-input-id"] == (sample.id or f"in/0/{out.offset}")
        assert out.value == (sample.value or b""), "dead letters keep the original value"


def test_surrogates_become_replacement_characters_in_metadata(pipeline):
    [sample] = [s for s in hostile_messages() if s.id.endswith("surrogate-metadata")]
    verdict = pipeline.one(sample.value, sample.headers).verdict()
    assert verdict["metadata"] == {"user\ufffd": "name\ufffd", "ok": ["\ufffd"]}


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": "]]]"}]}') == 3
    assert json_depth(b'{"a": "\\"[[[["}') == 1
    assert json_depth(b"[" * 50 + b"]" * 50) == 50
    assert json_depth(b"7") == 0


def test_every_limit_is_a_setting(tiny_encoder):
    tight = Pipeline(tiny_encoder, TINY_POLICY, MessageLimits(max_json_depth=3, max_id_chars=4, max_metadata_depth=1))
    b64 = base64.b64encode(GOOD).decode()
    ok = tight.one(json.dumps({"id": "abcd", "image": {"base64": b64}, "metadata": {"a": 1}}).encode())
    assert ok.kind == "verdict" and ok.verdict()["id"] == "abcd"
    long_id = tight.one(json.dumps({"id": "abcde", "image": {"base64": b64}}).encode())
    assert long_id.reason == "message_limit_exceeded" and "over the limit of 4" in long_id.headers["moderator-error-message"]
    nested = tight.one(json.dumps({"image": {"base64": b64}, "metadata": {"a": {"b": 1}}}).encode())
    assert nested.reason == "message_limit_exceeded" and "metadata nests more than 1" in nested.headers["moderator-error-message"]
    deep = tight.one(json.dumps({"image": {"base64": b64}, "metadata": {"a": [[1]]}}).encode())
    assert deep.reason == "message_limit_exceeded" and "nests 4 levels deep" in deep.headers["moderator-error-message"]


def test_an_encoder_failure_caused_by_one_image_dead_letters_only_that_image(tiny_encoder):
    """Not a BackendError: a batch that fails for another reason is split until the failing image
    is alone; it is dead-lettered and the rest of the batch is scored."""
    poisoned = encode(draw("cross", (1, 2, 3), (64, 48)), "PNG")

    class Picky:
        def __init__(self, encoder):
            self._encoder = encoder

        def __getattr__(self, name):
            return getattr(self._encoder, name)

        def encode_images(self, pixels):
            if any(int(p[24, 32, 0]) == 1 and int(p[24, 32, 2]) == 3 for p in pixels):
                raise ValueError("a kernel crashed on this image")
            return self._encoder.encode_images(pixels)

    pipe = Pipeline(Picky(tiny_encoder), TINY_POLICY)
    messages = [(None, GOOD, [("moderation-id", f"m{i}".encode())]) for i in range(7)]
    messages.insert(5, (None, poisoned, [("moderation-id", b"poisoned")]))
    outputs = pipe.run(messages)
    assert [o.kind for o in outputs] == ["verdict"] * 5 + ["dead_letter"] + ["verdict"] * 2
    assert outputs[5].reason == "processing_error" and outputs[5].headers["moderator-input-id"] == "poisoned"
    assert "a kernel crashed on this image" in outputs[5].headers["moderator-error-message"]


def test_an_unexpected_exception_while_parsing_is_that_messages_dead_letter(tiny_encoder, monkeypatch):
    from moderator.stream import worker as worker_module

    pipe = Pipeline(tiny_encoder, TINY_POLICY)
    real = worker_module.parse_message

    def flaky(source, value, headers, limits):
        if value == b"boom":
            raise RecursionError("something nobody planned for")
        return real(source, value, headers, limits)

    monkeypatch.setattr(worker_module, "parse_message", flaky)
    outputs = pipe.run([(None, GOOD, []), (None, b"boom", [("moderation-id", b"b")]), (None, GOOD, [])])
    assert [o.kind for o in outputs] == ["verdict", "dead_letter", "verdict"]
    assert outputs[1].reason == "processing_error" and outputs[1].headers["moderator-input-id"] == "b"


def test_a_verdict_that_cannot_be_serialised_becomes_a_dead_letter(tiny_encoder, monkeypatch):
    from moderator.stream import outputs as outputs_module

    pipe = Pipeline(tiny_encoder, TINY_POLICY)
    real = outputs_module.build_verdict

    def failing(request, *args, **kwargs):
        if request.id == "cannot":
            raise TypeError("Object of type X is not JSON serializable")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(outputs_module, "build_verdict", failing)
    outputs = pipe.run([(None, GOOD, [("moderation-id", b"cannot")]), (None, GOOD, [("moderation-id", b"can")])])
    assert [o.kind for o in outputs] == ["dead_letter", "verdict"]
    assert outputs[0].reason == "processing_error" and "building the verdict" in outputs[0].headers["moderator-error-message"]


def test_dead_letter_headers_cannot_fail():
    from moderator.errors import InvalidMessage
    from moderator.wire.deadletter import dead_letter_headers
    from moderator.wire.input import Source

    class Unprintable(InvalidMessage):
        def __str__(self):
            raise RuntimeError("no")

    headers = dead_letter_headers([("orig", b"\xff\xfe")], Source("t", 0, 1, None), "id\ud800", Unprintable())
    for k, v in headers:
        k.encode("utf-8")
        if k.startswith("moderator-"):
            v.decode("utf-8")
    values = dict(headers)
    assert values["orig"] == b"\xff\xfe", "original headers are passed through as they were"
    assert values["moderator-input-id"] == "id\ufffd".encode()
    assert values["moderator-error-message"].startswith(b"<unprintable Unprintable")
