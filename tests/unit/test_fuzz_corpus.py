"""Every input a fuzzer or a tester found to crash, stall or mislead the service, kept in
tests/fuzz/corpus/<target>/ and replayed through its target (tests/fuzz/targets.py)."""

from __future__ import annotations

import pytest

from tests.fuzz import targets

CASES = sorted((t, p) for t in targets.TARGETS for p in (targets.CORPUS / t).glob("*") if p.is_file())


def test_the_corpus_has_cases_for_every_target():
    assert {t for t, _ in CASES} == set(targets.TARGETS)


@pytest.mark.parametrize("target, path", CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_corpus_case(target, path):
    getattr(targets, target)(path.read_bytes())
