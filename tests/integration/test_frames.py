"""Animated images through the real broker with the default model: a benign first frame, a blank
one, or a 20 ms flash does not let a knife through, in any animated format; verdicts name the
frame. A video cut short is an overflow (review by default)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.conftest import REPO
from tests.integration.conftest import produce
from tests.unit.test_frames import FORMATS, animation, on_blank, on_transparent, picture, png

pytestmark = pytest.mark.integration


def test_every_frame_is_moderated_through_the_broker(broker, topics, service, collector):
    t = topics(1)
    cup, knife, flower = picture("cup", 31, "brown"), picture("knife", 32), picture("flower", 33, "red")
    blank, drawn = on_blank("knife", "red")  # under 2 % of a 16x16 thumbnail's mean from the blank frame
    messages = []
    for fmt, kwargs in FORMATS:
        messages.append((f"{t.input}-{fmt}-flash", animation(fmt, [cup, knife, cup.copy()], [3000, 20, 3000], **kwargs), "block"))
        messages.append((f"{t.input}-{fmt}-benign", animation(fmt, [cup, flower], 500, **kwargs), "allow"))
        messages.append((f"{t.input}-{fmt}-after-blank", animation(fmt, [blank, drawn, drawn.copy()], 500, **kwargs), "block"))
    messages.append((f"{t.input}-apng-default-image", animation("PNG", [knife, cup, flower], 500, default_image=True), "block"))
    pistol = f"{t.input}-white-pistol-on-transparent"  # invisible over white, plain on a dark theme
    produce(
        broker.bootstrap,
        t.input,
        [(mid, mid.encode(), data, [("moderation-id", mid.encode())]) for mid, data, _ in messages]
        + [(pistol, pistol.encode(), png(on_transparent("pistol", (250, 250, 250))), [("moderation-id", pistol.encode())])],
    )
    out = collector(t)
    svc = service(t, encoder={"model_dir": str(REPO / "models" / "default")}, policy={"path": str(REPO / "policies" / "default.yaml")})
    assert out.wait_for({mid for mid, _, _ in messages} | {pistol}, timeout=180), svc.log_tail()
    schema = json.loads((REPO / "docs" / "schemas" / "verdict.schema.json").read_text())
    by_id = {o.id: o for o in out.snapshot()}
    for mid, _, expected in messages:
        v = by_id[mid].json()
        jsonschema.validate(v, schema)
        assert v["decision"] == expected, (mid, v["reasons"])
        assert v["frames"]["total"] >= 2 and v["frames"]["scored"] >= 2, v["frames"]
        if expected == "block":
            weapons = next(c for c in v["categories"] if c["name"] == "weapons")
            assert weapons["fired"] and weapons["frame"] is not None
            if mid.endswith("-flash") and not mid.endswith("TIFF-flash"):
                assert weapons["frame"] == 1 and weapons["frame_timestamp_ms"] == 3000, weapons
    assert by_id[pistol].json()["decision"] == "block", by_id[pistol].json()["reasons"]
    assert len(by_id[pistol].json()["hashes"]["pdq"]) == 2, "one PDQ hash per rendering"
    assert svc.metric("moderator_frames_total", {"result": "scored"}) >= 2 * len(messages)
    assert svc.terminate() == 0


def test_a_flash_in_a_video_is_blocked_through_the_broker(broker, topics, service, collector):
    pytest.importorskip("av", reason="the video extra (PyAV) is in the dev install")
    from tests.unit.test_video import clip, scenes

    t = topics(1)
    cup, knife, flower = scenes(50)
    benign = clip([cup] * 45 + [flower] * 45, fmt="matroska")
    messages = [
        (f"{t.input}-mp4-flash", clip([cup] * 30 + [knife] + [cup] * 29), "block"),
        (f"{t.input}-webm-benign", clip([cup] * 20 + [flower] * 20, codec="libvpx-vp9", fmt="webm"), "allow"),
        (f"{t.input}-mkv-cut", benign[: len(benign) * 2 // 3], "review"),
    ]
    produce(broker.bootstrap, t.input, [(mid, mid.encode(), data, [("moderation-id", mid.encode())]) for mid, data, _ in messages])
    out = collector(t)
    svc = service(t, encoder={"model_dir": str(REPO / "models" / "default")}, policy={"path": str(REPO / "policies" / "default.yaml")})
    assert out.wait_for({mid for mid, _, _ in messages}, timeout=180), svc.log_tail()
    by_id = {o.id: o.json() for o in out.snapshot()}
    flash = by_id[f"{t.input}-mp4-flash"]
    assert flash["decision"] == "block", flash["reasons"]
    weapons = next(c for c in flash["categories"] if c["name"] == "weapons")
    assert weapons["frame"] == 30 and weapons["frame_timestamp_ms"] == 1000 and flash["frames"]["total"] == 60
    assert by_id[f"{t.input}-webm-benign"]["decision"] == "allow"
    cut = by_id[f"{t.input}-mkv-cut"]
    assert cut["decision"] == "review" and cut["frames"]["overflow"] == "review" and cut["frames"]["total"] < 90, cut
    assert svc.terminate() == 0
