from __future__ import annotations

import numpy as np
import pytest

from moderator.errors import PolicyError
from moderator.policy import compile_policy, load_policy, score
from moderator.policy.compile import CompiledPolicy

GOOD = """\
name: test
model: tiny-random
categories:
  - name: weapons
    prompts: [a photo of a knife, a photo of a gun]
    review: 0.2
    block: 0.3
  - name: fire
    prompts: [a photo of fire]
    review: 0.1
    block: 0.5
"""


def write(tmp_path, text):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return p


def test_load_and_version_is_a_content_hash(tmp_path):
    p = load_policy(write(tmp_path, GOOD))
    assert [c.name for c in p.categories] == ["weapons", "fire"]
    assert len(p.version) == 16
    assert load_policy(write(tmp_path, GOOD + "\n# comment\n")).version != p.version


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("block: 0.3", "block: 0.1"), r"categories.0: .*review threshold 0.2 is above block threshold 0.1"),
    (GOOD.replace("name: fire", "name: weapons"), "duplicate category names: weapons"),
    (GOOD.replace("[a photo of fire]", "[]"), r"categories.1.prompts: .*at least 1"),
    (GOOD.replace("[a photo of fire]", "['  ']"), "prompts must not be blank"),
    (GOOD.replace("review: 0.1", "review: 1.5"), r"categories.1.review: .*less than or equal to 1"),
    (GOOD.replace("name: fire", "name: Fire Stuff"), r"categories.1.name: .*pattern"),
    (GOOD.replace("    review: 0.1", "    reveiw: 0.1"), r"categories.1.reveiw: Extra inputs are not permitted"),
    ("- just\n- a list\n", "a policy is a mapping"),
])
def test_invalid_policies_say_where_and_why(tmp_path, text, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(write(tmp_path, text))


def test_yaml_syntax_error_points_at_line_and_column(tmp_path):
    with pytest.raises(PolicyError, match=r"policy.yaml:3:15: invalid YAML: mapping values are not allowed here"):
        load_policy(write(tmp_path, "name: x\ncategories:\n  - name: fire: smoke\n"))
    with pytest.raises(PolicyError, match=r"policy.yaml:4:1: invalid YAML: .*while parsing a flow sequence at line 3, column 11"):
        load_policy(write(tmp_path, "name: x\ncategories:\n  - name: [unclosed\n"))


def test_oversized_and_missing_files(tmp_path):
    with pytest.raises(PolicyError, match="over the 1048576-byte limit"):
        load_policy(write(tmp_path, "name: x\n" + "#" * (1024 * 1024)))
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


def test_compile_averages_the_prompt_ensemble(tmp_path, tiny_encoder):
    compiled = compile_policy(load_policy(write(tmp_path, GOOD)), tiny_encoder)
    assert compiled.categories == ("weapons", "fire")
    knife, gun = tiny_encoder.encode_texts(["a photo of a knife", "a photo of a gun"])
    mean = (knife + gun) / 2
    np.testing.assert_allclose(compiled.embeddings[0], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(compiled.embeddings, axis=1), 1.0, atol=1e-6)


def test_policy_for_another_model_is_refused(tmp_path, tiny_encoder):
    with pytest.raises(PolicyError, match="written for model 'clip-vit-l-14'.*runs 'tiny-random'"):
        compile_policy(load_policy(write(tmp_path, GOOD.replace("tiny-random", "clip-vit-l-14"))), tiny_encoder)


def _policy(review, block):
    emb = np.eye(3, dtype=np.float32)[:2]  # category a = axis 0, b = axis 1
    return CompiledPolicy("p", "v", ("a", "b"), emb, np.asarray(review, np.float32), np.asarray(block, np.float32))


def test_scoring_thresholds_are_inclusive_and_most_severe_wins():
    pol = _policy([0.5, 0.5], [0.8, 0.8])
    images = np.asarray([[0.5, 0.0, 0.866], [0.8, 0.6, 0.0], [0.1, 0.2, 0.97], [0.6, 0.8, 0.0]], np.float32)
    d = score(images, pol)
    assert [x.decision for x in d] == ["review", "block", "allow", "block"]
    assert [c.action for c in d[1].categories] == ["block", "review"]
    assert d[1].reasons == ["a: score 0.800 >= block threshold 0.800", "b: score 0.600 >= review threshold 0.500"]
    assert d[3].reasons[0].startswith("b: score 0.800"), "most severe first, then highest score"
    assert d[2].reasons == [] and not any(c.fired for c in d[2].categories)


def test_scoring_rejects_embeddings_of_another_dimension():
    with pytest.raises(ValueError, match="do not match"):
        score(np.zeros((1, 4), np.float32), _policy([0.5, 0.5], [0.8, 0.8]))


def test_shipped_policies_are_valid(tiny_encoder):
    from tests.conftest import TINY_POLICY

    compiled = compile_policy(load_policy(TINY_POLICY), tiny_encoder)
    assert len(compiled.categories) == 3
