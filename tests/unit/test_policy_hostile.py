"""Policy loading is total: every file content ends in a policy or located FILE:LINE:COL
problems, quickly, without a traceback (issue: hostile input)."""

from __future__ import annotations

import os
import threading

import pytest

from moderator.policy import PolicyFileError, load_policy
from moderator.policy.loader import MAX_DEPTH, MAX_EVENTS, MAX_POLICY_BYTES
from tests.unit.test_policy import GOOD, problems, write


def test_yaml_tags_are_refused_at_their_place(tmp_path):
    found = problems(tmp_path, "name: x\ncategories: !!python/object/apply:os.system ['echo owned']\n")
    assert found == ["2:13: YAML tags are not allowed in policies (found 'tag:yaml.org,2002:python/object/apply:os.system')"]
    assert problems(tmp_path, "name: !!str x\ncategories: []\n")[0].startswith("1:7: YAML tags are not allowed")
    assert problems(tmp_path, "name: x\ncategories: !custom []\n")[0].startswith("2:13: YAML tags are not allowed")


def test_complex_keys_are_refused(tmp_path):
    assert problems(tmp_path, "name: x\n? [a, b]\n: 1\ncategories: []\n") == ["2:3: complex mapping keys (a list or mapping used as a key) are not allowed"]
    assert problems(tmp_path, "name: x\n{a: 1}: 2\n")[0].startswith("2:1: complex mapping keys")


def test_huge_numbers_are_refused_before_conversion(tmp_path):
    found = problems(tmp_path, GOOD.replace("review: 0.2", "review: " + "1" * 5000))
    assert found == ["7:13: a number of 5000 characters; at most 64 are accepted"]
    assert problems(tmp_path, GOOD.replace("block: 0.3", "block: 0." + "3" * 100))[0].startswith("8:12: a number of 102")


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused_before_any_recursion(tmp_path, opener, closer):
    depth = 400_000 // len(opener)
    text = "name: x\ncategories: " + opener * depth + "1" + closer * depth + "\n"
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("2:") and ("nested more than" in found[0] or "nesting depth" in found[0]), found[:1]


def test_block_nesting_over_the_limit_is_refused_at_the_level_that_passes_it(tmp_path):
    text = "name: x\ncategories:\n" + "".join(" " * i + "a:\n" for i in range(MAX_DEPTH + 5))
    found = problems(tmp_path, text)
    # the root is level 1, "categories" level 2 on line 3: the mapping that opens level 33 starts
    # on the line after the 32nd "a:", where its first key is.
    assert found == [f"{MAX_DEPTH + 3}:{MAX_DEPTH + 1}: nested more than {MAX_DEPTH} levels deep; a policy needs a few"]


def test_a_flood_of_keys_is_refused_by_the_event_bound(tmp_path):
    found = problems(tmp_path, "name: x\ncategories: [" + "1," * MAX_EVENTS + "1]\n")
    assert len(found) == 1 and f"over {MAX_EVENTS} YAML events" in found[0]


def test_many_schema_problems_are_listed_up_to_a_bound(tmp_path):
    text = GOOD + "".join(f"extra{i}: 1\n" for i in range(500))
    found = problems(tmp_path, text)
    assert len(found) == 51 and found[-1].strip() == "... and 450 more problems", found[-2:]
    assert found[0].startswith("13:1: extra0: unknown key 'extra0'"), found[0]


@pytest.mark.parametrize("value", ["true", "'0.5'", '"0.5"', "yes", "[0.5]", "null"])
def test_thresholds_must_be_numbers_not_strings_or_booleans(tmp_path, value):
    found = problems(tmp_path, GOOD.replace("review: 0.2", f"review: {value}"))
    if value == "null":  # null means "not set": the category then has no review threshold and no default
        assert any("review threshold is required" in f for f in found), found
    else:
        assert found == ["7:13: categories.0.review: Input should be a valid number"], found


def test_temperature_must_be_a_number(tmp_path):
    found = problems(tmp_path, GOOD.replace("name: test\n", "name: test\ndefaults: {temperature: 'hot'}\n"))
    assert found == ["2:25: defaults.temperature: Input should be a valid number"], found


def test_more_than_one_document_is_refused(tmp_path):
    assert problems(tmp_path, GOOD + "---\nname: other\n")[0] == "13:1: one YAML document per policy file (found a second one)"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "1:1: a policy is a mapping with name and categories, got an empty file"),
        ("- a\n", "1:1: a policy is a mapping with name and categories, got a list"),
        ("just text\n", "1:1: a policy is a mapping with name and categories, got a single value"),
    ],
)
def test_documents_that_are_not_mappings(tmp_path, text, expected):
    assert problems(tmp_path, text) == [expected]


def test_non_regular_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, "/dev/zero"):
        done: list = []
        t = threading.Thread(target=lambda p=path, done=done: done.append(_error_of(p)), daemon=True)
        t.start()
        t.join(10)
        assert done, f"load_policy({path}) blocked"
        assert "not a regular file" in done[0], done[0]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_POLICY_BYTES * 64)  # sparse: nothing is read
    assert f"over the {MAX_POLICY_BYTES}-byte limit" in _error_of(big)


def test_a_symlinked_policy_still_loads(tmp_path):
    """Kubernetes mounts ConfigMaps through symlinks: only the target must be a regular file."""
    target = write(tmp_path, GOOD)
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert load_policy(link).policy.name == "test"


def test_timestamps_stay_text_and_booleans_keep_their_meaning(tmp_path):
    loaded = load_policy(write(tmp_path, GOOD.replace('version: "2026-11-28"', "version: 2026-11-28")))
    assert loaded.policy.version == "2026-11-28"


def _error_of(path) -> str:
    try:
        load_policy(path)
    except PolicyFileError as exc:
        return str(exc)
    return "loaded"
