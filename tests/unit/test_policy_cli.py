"""`moderator policy` on the tiny model: the mechanics (formats, exit codes, rewriting).
Evaluation and calibration with meaningful numbers: test_default_model.py."""

from __future__ import annotations

import json

import pytest

from moderator.cli.main import main
from moderator.local.samples import draw, encode
from moderator.policy import load_policy
from moderator.policy.rewrite import with_thresholds
from tests.conftest import TINY_MODEL, TINY_POLICY


@pytest.fixture
def policy_dir(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "red.png").write_bytes(encode(draw("circle", (220, 30, 30)), "PNG"))
    (tmp_path / "img" / "blue.png").write_bytes(encode(draw("square", (30, 30, 220)), "PNG"))
    return tmp_path


def test_lint_reports_every_problem_as_file_line_col(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncategories:\n  - name: a\n    prompts: [p]\n    reveiw: 0.1\n    block: 0.2\n")
    good = tmp_path / "good.yaml"
    good.write_text(TINY_POLICY.read_text())
    assert main(["policy", "lint", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert f"{good}: ok (3 categories" in out
    assert err.splitlines() == [
        f"{bad}:3:5: categories.0: category 'a': review threshold is required (in the category or in defaults)",
        f"{bad}:5:5: categories.0.reveiw: unknown key 'reveiw'; did you mean 'review'?",
    ]
    bad.write_text(bad.read_text().replace("reveiw", "review").replace("block: 0.2", "block: 0.05"))
    assert main(["policy", "lint", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == f"{bad}:6:12: categories.0.block: category 'a': review threshold 0.1 is above block threshold 0.05"
    assert main(["policy", "lint", str(good)]) == 0


def test_lint_with_a_model_checks_the_model(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(TINY_POLICY.read_text().replace("model: tiny-random", "model: another-model"))
    assert main(["policy", "lint", str(p)]) == 0
    assert main(["policy", "lint", str(p), "--model", str(TINY_MODEL)]) == 1
    assert "written for model 'another-model'" in capsys.readouterr().err


def test_explain_shows_each_prompt(policy_dir, capsys):
    assert main(["policy", "explain", str(TINY_POLICY), str(policy_dir / "img" / "red.png"), "--model", str(TINY_MODEL), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["categories"]] == ["weapons", "drugs", "fire"]
    weapons = doc["categories"][0]
    assert {p["prompt"] for p in weapons["prompts"]} == {"a photo of a knife", "a photo of a gun", "a photo of a weapon"}
    assert weapons["margin"] == pytest.approx(weapons["score"] - (weapons["block"] if weapons["action"] == "block" else weapons["review"]))
    assert main(["policy", "explain", str(TINY_POLICY), str(policy_dir / "img" / "red.png"), "--model", str(TINY_MODEL)]) == 0
    assert "weapons [cosine] score" in capsys.readouterr().out


def test_inline_tests_pass_and_fail(policy_dir, capsys):
    # What the model really decides for the two images, then tests that agree and one that does not.
    main(["policy", "explain", str(TINY_POLICY), str(policy_dir / "img" / "red.png"), "--model", str(TINY_MODEL), "--json"])
    red = json.loads(capsys.readouterr().out)
    fired = sorted(c["name"] for c in red["categories"] if c["action"] != "allow")
    wrong = "allow" if red["decision"] != "allow" else "block"
    text = TINY_POLICY.read_text() + (
        f"tests:\n  - {{image: img/red.png, decision: {red['decision']}, categories: {json.dumps(fired)}}}\n  - {{image: img/red.png, decision: {wrong}}}\n"
    )
    p = policy_dir / "p.yaml"
    p.write_text(text)
    assert main(["policy", "test", str(p), "--model", str(TINY_MODEL)]) == 1
    out = capsys.readouterr().out
    assert "PASS tests.0" in out and f"FAIL tests.1 img/red.png: decision {red['decision']}, expected {wrong}" in out
    assert "1 passed, 1 failed" in out
    p.write_text(text.split("  - {image: img/red.png, decision: " + wrong)[0])
    assert main(["policy", "test", str(p), "--model", str(TINY_MODEL)]) == 0


def test_threshold_rewrite_keeps_comments_and_adds_missing_keys(tmp_path):
    text = "# keep me\nname: x\ndefaults: {review: 0.1, block: 0.2}\ncategories:\n  - name: a  # and me\n    prompts: [p]\n    review: 0.1\n  - name: b\n    prompts: [q]\n"
    new = with_thresholds(text, {"a": {"review": 0.25, "block": 0.3}, "b": {"review": 0.05}})
    assert new.startswith("# keep me\n") and "# and me" in new
    (tmp_path / "p.yaml").write_text(new)
    cats = load_policy(tmp_path / "p.yaml").policy.categories
    assert (cats[0].review, cats[0].block, cats[1].review, cats[1].block) == (0.25, 0.3, 0.05, None)


def test_lint_formats_for_people_programs_and_ci(tmp_path, capsys):
    import json as _json

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncategories:\n  - name: a\n    prompts: [p]\n    review: 0.3\n    block: 0.1\n    colour: red\n")
    assert main(["policy", "lint", "--format", "json", str(bad)]) == 1
    doc = _json.loads(capsys.readouterr().out)
    problems = doc["files"][0]["problems"]
    assert [(p["line"], p["column"]) for p in problems] == [(6, 12), (7, 5)], problems
    assert main(["policy", "lint", "--format", "github", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"::error file={bad},line=6,col=12::categories.0.block: category 'a': review threshold 0.3")
    assert lines[1].startswith(f"::error file={bad},line=7,col=5::categories.0.colour: unknown key 'colour'")


def test_policy_test_writes_junit(tmp_path, capsys):
    from xml.etree import ElementTree as ET

    from tests.conftest import REPO

    report = tmp_path / "junit.xml"
    code = main(["policy", "test", str(REPO / "policies" / "default.yaml"), "--junit", str(report)])
    suite = ET.parse(report).getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests")) == len(suite.findall("testcase")) >= 1
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure")) == (0 if code == 0 else int(suite.get("failures")))


def test_scan_fail_on_gates_ci(tmp_path, capsys):
    from tests.conftest import REPO

    images = REPO / "examples" / "images"
    knife = next(images.glob("*-knife.jpg"))
    flower = next(images.glob("*-flower.jpg"))
    assert main(["scan", str(flower), "--fail-on", "review"]) == 0
    assert main(["scan", str(knife), "--fail-on", "block"]) == 1
    assert main(["scan", str(knife)]) == 0, "without --fail-on a scan reports, it does not judge"
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    assert main(["scan", str(junk), "--fail-on", "block"]) == 1, "an image that cannot be scored fails the gate too"


def test_calibrate_as_the_docs_show_it_keeps_a_review_band_and_writes_what_it_reports(tmp_path, capsys):
    """The docs' example on examples/labels.csv: separable scores once put review and block on the
    same number for every category (no review band); the written file must score as printed."""
    from moderator.policy import load_policy
    from tests.conftest import REPO

    out = tmp_path / "calibrated.yaml"
    labels = REPO / "examples" / "labels.csv"
    assert main(["policy", "calibrate", str(REPO / "policies" / "default.yaml"), "--labels", str(labels), "--target-precision", "0.95", "--out", str(out)]) == 0
    calibrated = load_policy(out).policy
    for c in calibrated.categories:
        assert c.review < c.block, f"{c.name}: a review band between {c.review} and {c.block}"
    capsys.readouterr()
    assert main(["policy", "eval", str(out), "--labels", str(labels), "--json", "--pr-curve", str(tmp_path / "pr.png")]) == 0
    import json as _json

    result = _json.loads(capsys.readouterr().out)
    for name, cat in result["categories"].items():
        assert cat["fires"]["precision"] >= 0.95, (name, cat["fires"])
        assert cat["blocks"]["precision"] >= 0.99, (name, cat["blocks"])
