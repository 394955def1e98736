from __future__ import annotations

import json

import pytest

from moderator.cli.main import main
from moderator.local.samples import draw, encode
from tests.conftest import TINY_MODEL, TINY_POLICY


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    (d / "a.jpg").write_bytes(encode(draw("circle", (200, 0, 0)), "JPEG"))
    (d / "sub" / "b.png").write_bytes(encode(draw("square", (0, 0, 200)), "PNG"))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return d


def test_scan_json_gives_one_line_per_file(images, capsys):
    code = main(["scan", str(images), "--json", "--model", str(TINY_MODEL), "--policy", str(TINY_POLICY)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in lines}
    assert set(by_name) == {"a.jpg", "b.png", "broken.jpg"}
    assert by_name["broken.jpg"]["error"]["reason"] == "undecodable_image"
    for name in ("a.jpg", "b.png"):
        r = by_name[name]
        assert r["decision"] in ("allow", "review", "block")
        assert [c["name"] for c in r["categories"]] == ["weapons", "drugs", "fire"]
        assert r["model"]["name"] == "tiny-random"


def test_scan_matches_the_service_path(images, tiny_encoder, capsys):
    """scan's scores are the encoder's cosine scores against the policy's ensemble embeddings, the
    highest over the squares the service scores of the image (media.crops: cover)."""
    from moderator.media.decode import DecodeLimits, decode_image
    from moderator.media.preprocess import Preprocessor
    from moderator.policy import compile_policy, load_policy

    main(["scan", str(images / "a.jpg"), "--json", "--model", str(TINY_MODEL), "--policy", str(TINY_POLICY)])
    got = json.loads(capsys.readouterr().out)
    pixels = Preprocessor(tiny_encoder.info().preprocess, crops="cover").squares(decode_image((images / "a.jpg").read_bytes(), DecodeLimits()))
    emb = tiny_encoder.encode_images(pixels)
    compiled = compile_policy(load_policy(TINY_POLICY), tiny_encoder)
    want = (emb @ compiled.embeddings.T).max(axis=0)
    assert [round(c["score"], 5) for c in got["categories"]] == [round(float(x), 5) for x in want]


def test_scan_table_and_missing_path(images, capsys):
    assert main(["scan", str(images), "--model", str(TINY_MODEL), "--policy", str(TINY_POLICY)]) == 0
    out = capsys.readouterr().out
    assert "DECISION" in out and "undecodable_image" in out
    assert main(["scan", str(images / "nope.jpg"), "--model", str(TINY_MODEL), "--policy", str(TINY_POLICY)]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_run_refuses_a_busy_telemetry_port(monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("MODERATOR_TELEMETRY__HOST", "127.0.0.1")
        monkeypatch.setenv("MODERATOR_TELEMETRY__PORT", str(s.getsockname()[1]))
        assert main(["run"]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
