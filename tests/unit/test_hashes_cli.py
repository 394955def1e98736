"""``moderator hashes``, bank reloads and the importers, as an operator uses them."""

from __future__ import annotations

import json
import random
import time

import pytest
from PIL import Image

from moderator.cli.main import main
from moderator.hashing.bankfile import read_bank, write_bank
from moderator.hashing.banks import load_banks
from moderator.hashing.importers import import_hashes
from moderator.hashing.reload import BankReloader
from tests.scenes import encode, scene

GOOD = "ab" * 32


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(3):
        (d / f"scene-{i}.jpg").write_bytes(encode(scene(i, (320, 240)), "JPEG", quality=90))
    return d


def test_compute_add_and_match(tmp_path, images, capsys):
    assert main(["hashes", "compute", "--json", str(images / "scene-0.jpg")]) == 0
    computed = json.loads(capsys.readouterr().out)
    assert len(computed["sha256"]) == 64 and computed["pdq"][0]["quality"] >= 50
    banks = tmp_path / "banks"
    banks.mkdir()
    assert main(["hashes", "add", str(banks / "bad.csv"), str(images / "scene-0.jpg"), "--category", "weapons"]) == 0
    assert main(["hashes", "add", str(banks / "bad.csv"), str(images / "scene-1.jpg"), "--category", "drugs", "--action", "review", "--hash-types", "pdq"]) == 0
    rows = read_bank(banks / "bad.csv")
    assert rows.hash_types == ["sha256", "pdq", "pdq"] and rows.actions == ["block", "block", "review"]
    capsys.readouterr()
    (images / "scene-0-repost.jpg").write_bytes(encode(scene(0, (320, 240)).resize((160, 120)), "JPEG", quality=40))
    (images / "scene-0-turned.jpg").write_bytes(encode(scene(0, (320, 240)).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=80))
    assert main(["hashes", "match", "--banks", str(banks), str(images / "scene-0-turned.jpg")]) == 0
    assert "(the frame turned 90° clockwise) weapons block" in capsys.readouterr().out, "as the service looks it up"
    assert main(["hashes", "match", "--json", "--banks", str(banks), str(images)]) == 0
    found = {r["path"].rsplit("/", 1)[1]: r["known"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert found["scene-0-turned.jpg"]["matches"][0]["turn"] == "rotate270"
    assert found["scene-0.jpg"]["matches"][0]["hash_type"] == "sha256", "exact bytes: the SHA-256 entry decides"
    assert found["scene-0-repost.jpg"]["matches"][0]["hash_type"] == "pdq" and found["scene-0-repost.jpg"]["decides"]
    assert found["scene-1.jpg"]["kind"] == "deny" and not found["scene-1.jpg"]["decides"], "a review match runs the classifier"
    assert found["scene-2.jpg"] is None


def test_add_refuses_a_kind_that_differs_and_keeps_the_bank(tmp_path, images, capsys):
    bank = tmp_path / "ok.csv"
    assert main(["hashes", "add", str(bank), str(images / "scene-0.jpg"), "--kind", "allow"]) == 0
    before = bank.read_bytes()
    assert main(["hashes", "add", str(bank), str(images / "scene-1.jpg")]) == 2
    assert "a bank of kind allow, not deny" in capsys.readouterr().err and bank.read_bytes() == before
    assert main(["hashes", "add", str(bank), str(images / "scene-1.jpg"), "--kind", "allow", "--action", "block"]) == 2


def test_import_threatexchange_csv_and_hash_lines(tmp_path, capsys):
    te = tmp_path / "collab.csv"
    te.write_text(
        "collab,signal_type,signal_str,category,tags\n"
        f"Sample Data,pdq,{GOOD},TRUE_POSITIVE,tag1 tag2\n"
        f"Sample Data,md5,{'0' * 32},TRUE_POSITIVE,\n"
        f"Sample Data,pdq,{'cd' * 32},FALSE_POSITIVE,\n"
    )
    assert main(["hashes", "import", "--format", "te-csv", str(te), "--out", str(tmp_path / "te.csv"), "--category", "terrorism"]) == 0
    rows = read_bank(tmp_path / "te.csv")
    assert rows.hashes == [bytes.fromhex(GOOD)] and rows.categories == ["terrorism"] and rows.notes == ["Sample Data tag1 tag2"]
    err = capsys.readouterr().err
    assert "skipped 1 rows: signal type 'md5'" in err and "skipped 1 rows: category FALSE_POSITIVE" in err
    lines = tmp_path / "hashes.txt"
    lines.write_text(f"# from a partner\npdq {GOOD} seen 2026-11\n{'ef' * 32}\n")
    assert main(["hashes", "import", "--format", "lines", str(lines), "--out", str(tmp_path / "l.csv")]) == 2
    assert "hashes.txt:3: a bare hash" in capsys.readouterr().err
    assert main(["hashes", "import", "--format", "lines", str(lines), "--hash-type", "sha256", "--out", str(tmp_path / "l.csv")]) == 0
    rows = read_bank(tmp_path / "l.csv")
    assert rows.hash_types == ["pdq", "sha256"] and rows.notes == ["seen 2026-11", ""]
    bad = tmp_path / "bad.txt"
    bad.write_text("pdq 1234\n")
    with pytest.raises(Exception, match="bad.txt:1: not a 256-bit hash"):
        import_hashes(bad, "lines", "deny")


@pytest.mark.parametrize(
    "body, where, message",
    [
        (f'pdq,{GOOD},"' + "x" * 200_000 + '"\n', ":2:", "field larger than field limit"),  # was a traceback
        (f'pdq,{GOOD},"a"b\n', ":2:", "',' expected after '\"'"),
        (f'pdq,{GOOD},x\npdq,{GOOD},"open', ":3:", "unexpected end of data"),
    ],
    ids=["huge-field", "stray-quote", "unclosed-quote"],
)
def test_a_partners_malformed_csv_is_refused_at_its_line(tmp_path, capsys, body, where, message):
    te = tmp_path / "collab.csv"
    te.write_text("signal_type,signal_str,tags\n" + body)
    out = tmp_path / "te.csv"
    assert main(["hashes", "import", "--format", "te-csv", str(te), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"collab.csv{where} not CSV" in err and message in err and not out.exists(), err


def test_a_bank_from_reviewed_verdicts(tmp_path, capsys):
    verdicts = tmp_path / "confirmed.jsonl"
    pdq = "12" * 32
    lines = [
        {
            "id": "a",
            "decision": "block",
            "processed_at": "2026-12-01T10:00:00.000Z",
            "categories": [{"name": "weapons", "fired": True}],
            "known": None,
            "hashes": {"sha256": "34" * 32, "pdq": [{"hash": pdq, "quality": 90, "frame": None}]},
        },
        {"id": "b", "decision": "allow", "categories": [], "known": None, "hashes": {"sha256": "56" * 32, "pdq": []}},
    ]
    verdicts.write_text("\n".join(json.dumps(v) for v in lines) + "\n")
    assert main(["hashes", "from-verdicts", str(verdicts), "--decision", "block", "--out", str(tmp_path / "reviewed.csv")]) == 0
    rows = read_bank(tmp_path / "reviewed.csv")
    assert rows.hash_types == ["sha256", "pdq"] and rows.categories == ["weapons", "weapons"]
    assert rows.notes == ["verdict a", "verdict a"] and rows.added == ["2026-12-01", "2026-12-01"]
    before = (tmp_path / "reviewed.csv").read_bytes()
    for bad in (
        '{"id": "old", "decision": "block"}',
        '{"hashes": ["not", "a", "mapping"]}',
        '{"hashes": {"sha256": "zz", "pdq": []}}',
        '{"hashes": {"sha256": null, "pdq": [7]}}',
        "[" * 100_000 + "]" * 100_000,  # was a RecursionError traceback
    ):
        verdicts.write_text(json.dumps(lines[0]) + "\n" + bad + "\n")
        assert main(["hashes", "from-verdicts", str(verdicts), "--out", str(tmp_path / "reviewed.csv")]) == 2, bad
        assert "confirmed.jsonl:2: not a verdict with hashes" in capsys.readouterr().err
        assert (tmp_path / "reviewed.csv").read_bytes() == before, "nothing written"


def test_a_verdict_id_with_line_breaks_cannot_fail_a_banks_export(tmp_path):
    # The id is a message's key or envelope id, chosen by whoever sent the image.
    verdicts = tmp_path / "confirmed.jsonl"
    hostile = {"id": "x\u2028sha256\r\ny", "decision": "block", "categories": [], "known": None, "hashes": {"sha256": "34" * 32, "pdq": []}}
    verdicts.write_text(json.dumps(hostile, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["hashes", "from-verdicts", str(verdicts), "--out", str(tmp_path / "reviewed.csv")]) == 0
    rows = read_bank(tmp_path / "reviewed.csv")
    assert rows.hashes == [bytes.fromhex("34" * 32)] and rows.notes == ["verdict x sha256 y"]


def test_an_invalid_bank_never_replaces_a_file(tmp_path):
    from moderator.hashing.bankfile import BankFileError, append_rows

    bank = tmp_path / "b.csv"
    write_bank(bank, "deny", [{"hash_type": "pdq", "hash": GOOD}])
    before = bank.read_bytes()
    with pytest.raises(BankFileError, match=r"b\.csv:4: hash is 64 hexadecimal digits"):
        write_bank(bank, "deny", [{"hash_type": "pdq", "hash": "00"}])
    with pytest.raises(BankFileError, match=r"b\.csv:5: category must be"):
        append_rows(bank, [{"hash_type": "sha256", "hash": GOOD, "category": "Not A Category"}])
    assert bank.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["b.csv"], "untouched, nothing left behind"
    assert len(append_rows(bank, [{"hash_type": "sha256", "hash": GOOD}], kind="deny")) == 2


class Target:
    def __init__(self, banks):
        self.banks = banks

    def set_banks(self, banks):
        self.banks = banks


class Reporter:
    def __init__(self):
        self.events = []

    def banks_reloaded(self, banks):
        self.events.append(("ok", banks.version))

    def banks_reload_failed(self):
        self.events.append(("failed", None))


def test_a_broken_bank_file_keeps_the_old_banks_and_a_fixed_one_is_picked_up(tmp_path):
    write_bank(tmp_path / "a.csv", "deny", [{"hash_type": "pdq", "hash": GOOD}])
    target, reporter = Target(load_banks(tmp_path, 100)), Reporter()
    serving = target.banks
    reloader = BankReloader(tmp_path, target, reporter, interval_s=0.05, max_entries=100)
    reloader.start()
    try:
        (tmp_path / "b.csv").write_text("# kind: deny\nhash_type,hash\npdq,not-a-hash\n")
        _wait(lambda: reporter.events)
        assert reporter.events == [("failed", None)] and target.banks is serving
        write_bank(tmp_path / "b.csv", "allow", [{"hash_type": "sha256", "hash": "cd" * 32}])
        _wait(lambda: len(reporter.events) == 2)
        assert reporter.events[1][0] == "ok" and target.banks is not serving
        assert [b.name for b in target.banks.banks] == ["a", "b"] and target.banks.version == reporter.events[1][1]
    finally:
        reloader.stop()


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the reloader did not react"
        time.sleep(0.02)


def test_the_hashes_cli_survives_undecodable_files(tmp_path, capsys):
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff" + bytes(random.Random(0).randrange(256) for _ in range(100)))
    assert main(["hashes", "compute", str(tmp_path / "junk.jpg")]) == 1
    assert "error: undecodable_image" in capsys.readouterr().out
