from __future__ import annotations

import base64
import hashlib
import json

import jsonschema
import pytest

from moderator.errors import InvalidMessage, UndecodableImage
from moderator.hashing.compute import Hashes, PdqHash
from moderator.policy.compile import CompiledPolicy
from moderator.policy.score import CategoryResult, Decision
from moderator.processing import Outcome
from moderator.wire import Source, build_verdict, dead_letter_headers, parse_message
from moderator.wire.schemas import schema_documents
from moderator.wire.verdict import Timings
from tests.conftest import REPO

SRC = Source("images", 2, 41, 1_700_000_000_000)


def test_raw_image_with_headers():
    req = parse_message(SRC, b"\xff\xd8jpeg", [("content-type", b"image/jpeg"), ("Moderation-Id", b"abc"), ("tenant", b"t1")])
    assert (req.id, req.encoding, req.image, req.content_type) == ("abc", "raw", b"\xff\xd8jpeg", "image/jpeg")
    assert req.metadata == {"tenant": "t1"}


def test_id_falls_back_to_coordinates():
    assert parse_message(SRC, b"\x89PNG", None).id == "images/2/41"


def test_envelope_by_content_type_or_by_shape():
    env = {"id": 7, "image": {"base64": base64.b64encode(b"img").decode()}, "metadata": {"user": "u1"}, "extra": 1}
    for headers in ([("content-type", b"application/json")], []):
        req = parse_message(SRC, json.dumps(env).encode(), headers)
        assert (req.id, req.image, req.encoding, req.metadata) == ("7", b"img", "envelope", {"user": "u1"})
    # The header id wins over the envelope's.
    assert parse_message(SRC, json.dumps(env).encode(), [("moderation-id", b"h")]).id == "h"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty message value"),
        (b'{"image": ', "not valid JSON"),
        (b'{"id": "x"}', "image: Field required"),
        (b'{"image": {"base64": "@@@"}}', "not valid base64"),
        (b'{"image": {"url": "http://x"}}', "image.base64: Field required"),
        (b'{"id": [1], "image": {"base64": ""}}', "id"),
    ],
)
def test_bad_envelopes_are_invalid_messages(value, message):
    with pytest.raises(InvalidMessage, match=message):
        parse_message(SRC, value, [])


def _verdict(known=None):
    import numpy as np

    from moderator.encoders.base import EncoderInfo
    from moderator.models.manifest import Preprocess

    info = EncoderInfo(
        "onnx", "m", "0123456789abcdef", "tiny", "fp32", 2, Preprocess(image_size=8, mean=(0, 0, 0), std=(1, 1, 1)), 100.0, None, ("CPUExecutionProvider",)
    )
    pol = CompiledPolicy("p", "feedfacefeedface", ("weapons",), np.eye(2, dtype=np.float32)[:1], np.asarray([0.2], np.float32), np.asarray([0.3], np.float32))
    dec = Decision("review", (CategoryResult("weapons", 0.25, 0.2, 0.3, "review", True),))
    req = parse_message(SRC, b"img", [("moderation-id", b"m1"), ("tenant", b"t")])
    outcome = Outcome(pol, dec if known is None else None, known, Hashes(hashlib.sha256(b"img").digest(), (PdqHash(bytes(range(32)), 87),)))
    return build_verdict(req, outcome, info, Timings(decode_ms=1, queue_ms=2, encode_ms=3, score_ms=0.1, batch_size=4))


def test_verdict_json_validates_against_the_published_schema():
    schema = json.loads((REPO / "docs" / "schemas" / "verdict.schema.json").read_text())
    doc = json.loads(_verdict().model_dump_json())
    jsonschema.validate(doc, schema)
    assert doc["schema_version"] == 2
    assert doc["hashes"] == {"sha256": hashlib.sha256(b"img").hexdigest(), "pdq": [{"hash": bytes(range(32)).hex(), "quality": 87, "frame": None}]}
    assert doc["known"] is None and doc["cached"] is False
    assert doc["source"] == {"topic": "images", "partition": 2, "offset": 41, "timestamp": 1_700_000_000_000}
    assert doc["decision"] == "review" and doc["reasons"] == ["weapons: score 0.250 >= review threshold 0.200"]
    assert doc["metadata"] == {"tenant": "t"}
    assert doc["processed_at"].endswith("Z")
    bad = dict(doc, decision="maybe")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("turn", "trimmed", "how"),
    [
        ("mirror", False, "the frame mirrored"),
        (None, True, "the frame without its border"),
        ("rotate270", True, "the frame without its border and turned 90° clockwise"),
    ],
)
def test_a_match_of_a_turned_or_trimmed_frame_says_so_in_the_verdict(turn, trimmed, how):
    from moderator.hashing.banks import Match
    from moderator.hashing.known import Known

    m = Match("known-bad", "deny", "pdq", "ab" * 32, 12, "weapons", "block", "case 9", "", 5, 0, "block", turn, trimmed)
    doc = json.loads(_verdict(Known("deny", m, (m,))).model_dump_json())
    jsonschema.validate(doc, json.loads((REPO / "docs" / "schemas" / "verdict.schema.json").read_text()))
    assert doc["decision"] == "block" and doc["known"]["match"]["distance"] == 12
    assert (doc["known"]["match"]["turn"], doc["known"]["match"]["trimmed"]) == (turn, trimmed)
    assert doc["reasons"] == [f"hash_match: weapons in bank 'known-bad' (pdq distance 12, {how}): block"]


def test_published_schemas_are_current():
    for name, text in schema_documents().items():
        path = REPO / "docs" / name
        assert path.read_text() == text, f"{path} is stale: run `moderator schemas`"


def test_dead_letter_keeps_original_headers_and_adds_ours():
    original = [("content-type", b"image/jpeg"), ("moderation-id", b"m1")]
    headers = dead_letter_headers(original, SRC, "m1", UndecodableImage("truncated JPEG"))
    assert headers[:2] == original
    ours = {k: v.decode() for k, v in headers[2:]}
    assert ours["moderator-error-class"] == "UndecodableImage"
    assert ours["moderator-error-reason"] == "undecodable_image"
    assert ours["moderator-error-message"] == "truncated JPEG"
    assert (ours["moderator-source-topic"], ours["moderator-source-partition"], ours["moderator-source-offset"]) == ("images", "2", "41")
    assert ours["moderator-input-id"] == "m1"


def test_the_documented_verdict_example_is_a_valid_verdict():
    from moderator.wire.verdict import Verdict

    text = (REPO / "docs" / "wire-format.md").read_text()
    examples = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    verdicts = [e for e in examples if '"schema_version"' in e]
    assert verdicts, "docs/wire-format.md shows a verdict"
    for e in verdicts:
        Verdict.model_validate_json(e)
