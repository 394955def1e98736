"""Threshold rewrites keep every byte they do not change, in block and flow style (issue: policy
tools that never mislead, 2)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from moderator.policy.loader import load_policy
from moderator.policy.rewrite import with_thresholds

BLOCK = """\
name: p  # the policy
categories:
  # weapons first
  - name: weapons
    prompts: [a knife]   # one prompt
    review: 0.2
  - {name: fire, prompts: [flames], review: 0.3, block: 0.4}
  - {name: drugs, prompts: [pills]}
  - name: smoke
    prompts:
      - a cigarette
defaults: {review: 0.5, block: 0.9}
"""


def test_flow_and_block_categories_are_rewritten_validly(tmp_path):
    new = with_thresholds(
        BLOCK, {"weapons": {"review": 0.25, "block": 0.5}, "fire": {"block": 0.45}, "drugs": {"review": 0.1, "block": 0.2}, "smoke": {"review": 0.6}}
    )
    path = tmp_path / "p.yaml"
    path.write_text(new)
    policy = load_policy(path).policy
    got = {c.name: (c.review, c.block) for c in policy.categories}
    assert got == {"weapons": (0.25, 0.5), "fire": (0.3, 0.45), "drugs": (0.1, 0.2), "smoke": (0.6, None)}
    assert "  - {name: drugs, review: 0.1, block: 0.2, prompts: [pills]}" in new or "  - {name: drugs, block: 0.2, review: 0.1, prompts: [pills]}" in new, new
    for line in ("name: p  # the policy", "  # weapons first", "    prompts: [a knife]   # one prompt", "defaults: {review: 0.5, block: 0.9}"):
        assert line in new.splitlines()


@settings(max_examples=int(os.environ.get("MODERATOR_FUZZ_EXAMPLES", "100")), deadline=None)
@given(
    flow=st.lists(st.booleans(), min_size=1, max_size=4),
    review=st.floats(0, 0.5),
    block=st.floats(0.5, 1),
    with_values=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_any_mix_of_styles_stays_a_valid_policy(tmp_path_factory, flow, review, block, with_values):
    lines = ["name: p", "categories:"]
    for i, f in enumerate(flow):
        extra = ", review: 0.1, block: 0.9" if with_values[i] else ""
        if f:
            lines.append(f"  - {{name: c{i}, prompts: [x{i}]{extra}}}  # c{i}")
        else:
            lines += [f"  - name: c{i}  # c{i}", f"    prompts: [x{i}]"] + (["    review: 0.1", "    block: 0.9"] if with_values[i] else [])
    text = "\n".join(lines) + "\n"
    new = with_thresholds(text, {f"c{i}": {"review": review, "block": block} for i in range(len(flow))})
    path = tmp_path_factory.mktemp("p") / "p.yaml"
    path.write_text(new)
    policy = load_policy(path).policy
    for c in policy.categories:
        assert abs(c.review - review) < 1e-6 and abs(c.block - block) < 1e-6
    assert all(f"# c{i}" in new for i in range(len(flow))), "comments kept"


def test_an_invalid_result_is_never_written(tmp_path):
    import pytest

    from moderator.cli.policy import _write_valid
    from moderator.policy.loader import PolicyFileError

    out = tmp_path / "policy.yaml"
    out.write_text(BLOCK)
    with pytest.raises(PolicyFileError):
        _write_valid(out, BLOCK.replace("review: 0.2", "review: 2.0"))
    assert out.read_text() == BLOCK and [p.name for p in tmp_path.iterdir()] == ["policy.yaml"], "untouched, no temporary left"
    _write_valid(out, BLOCK.replace("review: 0.2", "review: 0.25"))
    assert "review: 0.25" in out.read_text()
