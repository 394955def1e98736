"""`moderator scan` judges animated images and video on every frame, as the service does."""

from __future__ import annotations

import json

import pytest

from moderator.cli.main import main
from tests.conftest import REPO
from tests.unit.test_frames import animation, picture


def test_scan_blocks_a_flash_in_an_animation_and_a_video(tmp_path, capsys):
    cup, knife = picture("cup", 61, "brown"), picture("knife", 62)
    (tmp_path / "flash.gif").write_bytes(animation("GIF", [cup, knife, cup.copy()], [3000, 20, 3000]))
    (tmp_path / "benign.webp").write_bytes(animation("WEBP", [cup, picture("flower", 63, "red")], 500, lossless=True))
    av = pytest.importorskip("av", reason="the video extra (PyAV) is in the dev install")
    assert av
    from tests.unit.test_video import clip

    (tmp_path / "flash.mp4").write_bytes(clip([cup] * 20 + [knife] + [cup] * 19))
    code = main(["scan", str(tmp_path), "--json", "--model", str(REPO / "models" / "default"), "--policy", str(REPO / "policies" / "default.yaml")])
    assert code == 0
    results = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    assert results["flash.gif"]["decision"] == "block" and results["flash.mp4"]["decision"] == "block"
    assert results["benign.webp"]["decision"] == "allow"
    weapons = next(c for c in results["flash.mp4"]["categories"] if c["name"] == "weapons")
    assert weapons["frame"] == 20 and results["flash.mp4"]["frames"]["total"] == 40
