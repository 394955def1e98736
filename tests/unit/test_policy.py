from __future__ import annotations

import numpy as np
import pytest

from moderator.errors import PolicyError
from moderator.policy import PolicyFileError, category_scores, compile_policy, explain, load_policy, score
from moderator.policy.cache import EmbeddingCache
from moderator.policy.compile import CompiledCategory, CompiledPolicy
from tests.conftest import TINY_POLICY

GOOD = """\
name: test
version: "2026-11-28"
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


def write(tmp_path, text, name="policy.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path, text) -> list[str]:
    with pytest.raises(PolicyFileError) as err:
        load_policy(write(tmp_path, text))
    return [p.format(err.value.path).split("policy.yaml:", 1)[1] for p in err.value.problems]


def test_load_and_version_is_a_content_hash(tmp_path):
    loaded = load_policy(write(tmp_path, GOOD))
    assert [c.name for c in loaded.policy.categories] == ["weapons", "fire"]
    assert loaded.policy.version == "2026-11-28" and len(loaded.digest) == 16
    assert load_policy(write(tmp_path, GOOD + "\n# comment\n")).digest != loaded.digest


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("block: 0.3", "block: 0.1"), "8:12: categories.0.block: category 'weapons': review threshold 0.2 is above block threshold 0.1"),
        (("name: fire", "name: weapons"), "9:11: categories.1.name: duplicate category name 'weapons' (first at categories.0)"),
        (("[a photo of fire]", "[]"), "9:5: categories.1: a category needs at least one prompt"),
        (("[a photo of fire]", "['  ']"), "10:14: categories.1.prompts: must not contain blank strings"),
        (("review: 0.1", "review: 1.5"), "11:13: categories.1.review: category 'fire': review threshold 1.5 is out of range [-1, 1] for cosine scoring"),
        (("name: fire", "name: Fire Stuff"), "9:11: categories.1.name: String should match pattern"),
        (("    review: 0.1", "    reveiw: 0.1"), "11:5: categories.1.reveiw: unknown key 'reveiw'; did you mean 'review'?"),
        (("version:", "verison:"), "2:1: verison: unknown key 'verison'; did you mean 'version'?"),
    ],
)
def test_each_error_is_distinct_and_located(tmp_path, edit, expected):
    found = problems(tmp_path, GOOD.replace(*edit))
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_several_problems_are_reported_together(tmp_path):
    found = problems(tmp_path, GOOD.replace("review: 0.2", "reveiw: 0.2").replace("[a photo of fire]", "['']"))
    assert len(found) == 3, found  # the misspelt key, the review threshold it leaves unset, the blank prompt
    assert [f.split(":")[0] for f in found] == sorted((f.split(":")[0] for f in found), key=int), "sorted by line"
    block = GOOD.replace("block: 0.3", "block: 1.5").replace("    block: 0.5\n", "    block: 2.5\n")
    found = problems(tmp_path, block.replace("version:", "verison:"))
    assert len(found) == 3 and "verison" in found[0] and "block threshold 1.5" in found[1] and "block threshold 2.5" in found[2], (
        "every threshold problem, beside an unknown key, each at its value"
    )


def test_yaml_syntax_errors_point_at_line_and_column(tmp_path):
    # libyaml says "... not allowed in this context", PyYAML's pure parser "... not allowed here"
    found = problems(tmp_path, "name: x\ncategories:\n  - name: fire: smoke\n")
    assert len(found) == 1 and found[0].startswith("3:15: invalid YAML: mapping values are not allowed"), found
    found = problems(tmp_path, "name: x\ncategories:\n  - name: [unclosed\n")
    assert found[0].startswith("4:1: invalid YAML") and "flow sequence at line 3, column 11" in found[0]


def test_yaml_bombs_duplicate_keys_and_huge_files_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    assert "anchors and aliases are not allowed" in problems(tmp_path, bomb)[0]
    dup = GOOD.replace("    block: 0.5\n", "    block: 0.5\n    block: 0.6\n")
    assert problems(tmp_path, dup) == ["13:5: duplicate key 'block' (first at line 12)"]
    with pytest.raises(PolicyError, match="over the 1048576-byte limit"):
        load_policy(write(tmp_path, "name: x\n" + "#" * (1024 * 1024)))
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


def test_templates_terms_defaults_and_mode_rules(tmp_path):
    text = """\
name: t
defaults: {review: 0.2, block: 0.3}
categories:
  - name: weapons
    prompts: [a weapon]
    templates: ["a photo of {}", "a drawing of {}"]
    terms: [a knife, a dagger]
"""
    c = load_policy(write(tmp_path, text)).policy.categories[0]
    assert c.all_prompts() == ["a weapon", "a photo of a knife", "a photo of a dagger", "a drawing of a knife", "a drawing of a dagger"]
    assert "templates and terms go together" in problems(tmp_path, text.replace("    terms: [a knife, a dagger]\n", ""))[0]
    assert "exactly one {}" in problems(tmp_path, text.replace('"a photo of {}"', '"a photo"'))[0]
    contrast = text + "    contrast: [a spoon]\n"
    assert "contrast prompts need scoring: softmax" in problems(tmp_path, contrast)[0]
    assert "out of range [0, 1] for softmax" in problems(tmp_path, contrast.replace("{review: 0.2", "{scoring: softmax, review: -0.2"))[0]
    assert "threshold is required" in problems(tmp_path, text.replace("defaults: {review: 0.2, block: 0.3}\n", ""))[0]


def test_compile_averages_the_prompt_ensemble(tmp_path, tiny_encoder):
    compiled = compile_policy(load_policy(write(tmp_path, GOOD)), tiny_encoder)
    assert compiled.categories == ("weapons", "fire") and compiled.label == "2026-11-28"
    knife, gun = tiny_encoder.encode_texts(["a photo of a knife", "a photo of a gun"])
    mean = (knife + gun) / 2
    np.testing.assert_allclose(compiled.embeddings[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_policy_for_another_model_or_build_is_refused(tmp_path, tiny_encoder):
    with pytest.raises(PolicyError, match="written for model 'clip-vit-l-14'.*runs 'tiny-random'"):
        compile_policy(load_policy(write(tmp_path, GOOD.replace("model: tiny-random", "model: clip-vit-l-14"))), tiny_encoder)
    with pytest.raises(PolicyError, match="expects model checksum 0000"):
        compile_policy(load_policy(write(tmp_path, GOOD.replace("model: tiny-random", "model: {name: tiny-random, checksum: '0000'}"))), tiny_encoder)
    sig = GOOD.replace("    prompts: [a photo of fire]", "    scoring: sigmoid\n    prompts: [a photo of fire]")
    with pytest.raises(PolicyError, match="sigmoid scoring, which needs a sigmoid-trained model"):
        compile_policy(load_policy(write(tmp_path, sig)), tiny_encoder)


def test_embedding_cache_encodes_only_new_prompts(tmp_path, tiny_encoder):
    cache_dir = tmp_path / "cache"
    first = EmbeddingCache(cache_dir, "abc")
    compile_policy(load_policy(write(tmp_path, GOOD)), tiny_encoder, first)
    assert (first.hits, first.misses) == (0, 3)
    again = EmbeddingCache(cache_dir, "abc")  # a restart
    edited = compile_policy(load_policy(write(tmp_path, GOOD.replace("a photo of fire", "a photo of flames"))), tiny_encoder, again)
    assert (again.hits, again.misses) == (2, 1), "a one-prompt edit encodes one prompt"
    want = tiny_encoder.encode_texts(["a photo of flames"])[0]
    np.testing.assert_allclose(edited.embeddings[1], want / np.linalg.norm(want), atol=1e-6)
    assert EmbeddingCache(cache_dir, "other-model").encode(tiny_encoder, ["a photo of a knife"]) and True


def _cat(name, scoring="cosine", review=0.5, block=0.8, action="block", severity=0, prompts=None, contrast=None, prototypes=None, temperature=0.1):
    p = np.asarray(prompts if prompts is not None else [[1.0, 0.0, 0.0]], np.float32)
    ens = p.mean(axis=0)
    return CompiledCategory(
        name,
        scoring,
        temperature,
        review,
        block,
        action,
        severity,
        tuple(f"{name}{i}" for i in range(len(p))),
        p,
        ens / np.linalg.norm(ens),
        tuple(f"c{i}" for i in range(len(contrast or []))),
        None if contrast is None else np.asarray(contrast, np.float32),
        None if prototypes is None else np.asarray(prototypes, np.float32),
    )


def _policy(*cats, escalate=None, bias=None):
    return CompiledPolicy(
        "p",
        "v",
        tuple(c.name for c in cats),
        np.stack([c.ensemble for c in cats]),
        np.asarray([c.review for c in cats], np.float32),
        np.asarray([c.block for c in cats], np.float32),
        entries=cats,
        escalate_reviews=escalate,
        logit_scale=10.0,
        logit_bias=bias,
    )


def test_cosine_thresholds_are_inclusive_and_most_severe_wins():
    pol = _policy(_cat("a"), _cat("b", prompts=[[0.0, 1.0, 0.0]]))
    images = np.asarray([[0.5, 0.0, 0.866], [0.8, 0.6, 0.0], [0.1, 0.2, 0.97], [0.6, 0.8, 0.0]], np.float32)
    d = score(images, pol)
    assert [x.decision for x in d] == ["review", "block", "allow", "block"]
    assert d[1].reasons == ["a: score 0.800 >= block threshold 0.800", "b: score 0.600 >= review threshold 0.500"]
    assert d[3].reasons[0].startswith("b: score 0.800")
    assert d[2].reasons == [] and not any(c.fired for c in d[2].categories)


def test_review_only_categories_never_block_and_ties_are_deterministic():
    pol = _policy(_cat("zeta", action="review"), _cat("alpha", action="review"), _cat("mid", severity=5, action="review"))
    d = score(np.asarray([[1.0, 0.0, 0.0]], np.float32), pol)[0]
    assert d.decision == "review"
    assert [c.name for c in d.fired] == ["mid", "alpha", "zeta"], "severity first, then margin, then name"


def test_reviews_escalate_to_block():
    pol = _policy(_cat("a"), _cat("b", prompts=[[0.0, 1.0, 0.0]]), escalate=2)
    x = np.asarray([[0.6, 0.6, 0.529], [0.6, 0.1, 0.79]], np.float32)
    both, one = score(x, pol)
    assert both.decision == "block" and both.escalated and "escalated to block" in both.reasons[-1]
    assert one.decision == "review" and not one.escalated


def test_softmax_scoring_with_contrast_prompts():
    cat = _cat("weapons", "softmax", review=0.5, block=0.9, prompts=[[1.0, 0.0, 0.0]], contrast=[[0.0, 1.0, 0.0]], temperature=0.1)
    pol = _policy(cat)
    x = np.asarray([[0.8, 0.6, 0.0], [0.6, 0.8, 0.0]], np.float32)
    s = category_scores(x, pol)[:, 0]
    want = [1 / (1 + np.exp((0.6 - 0.8) / 0.1)), 1 / (1 + np.exp((0.8 - 0.6) / 0.1))]
    np.testing.assert_allclose(s, want, rtol=1e-5)
    assert [d.decision for d in score(x, pol)] == ["review", "allow"], "a closer look-alike pulls the score down"


def test_sigmoid_scoring_uses_the_models_scale_and_bias():
    pol = _policy(_cat("a", "sigmoid", review=0.5, block=0.9), bias=-5.0)
    x = np.asarray([[0.8, 0.6, 0.0], [0.3, 0.954, 0.0]], np.float32)
    np.testing.assert_allclose(category_scores(x, pol)[:, 0], 1 / (1 + np.exp(-(10.0 * x[:, 0] - 5.0))), rtol=1e-5)


def test_example_prototypes_raise_cosine_scores():
    pol = _policy(_cat("a", prototypes=[[0.0, 0.0, 1.0]]))
    s = category_scores(np.asarray([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32), pol)[:, 0]
    np.testing.assert_allclose(s, [1.0, 1.0])


def test_explain_lists_every_prompt_with_its_cosine(tmp_path, tiny_encoder):
    compiled = compile_policy(load_policy(write(tmp_path, GOOD)), tiny_encoder)
    x = tiny_encoder.encode_images(np.zeros((1, 64, 64, 3), np.uint8))[0]
    rows = explain(x, compiled)
    assert [r.name for r, _ in rows] == ["weapons", "fire"]
    assert {p.prompt for p in rows[0][1]} == {"a photo of a knife", "a photo of a gun"}
    assert abs(rows[0][0].margin - (rows[0][0].score - rows[0][0].threshold)) < 1e-9


def test_scoring_rejects_embeddings_of_another_dimension():
    with pytest.raises(ValueError, match="do not match"):
        score(np.zeros((1, 4), np.float32), _policy(_cat("a")))


def test_shipped_policies_are_valid(tiny_encoder):
    assert len(compile_policy(load_policy(TINY_POLICY), tiny_encoder).categories) == 3


def test_policies_in_the_docs_are_valid(tmp_path):
    from tests.conftest import REPO

    text = (REPO / "docs" / "policies.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    policies = [b for b in blocks if "\nname:" in "\n" + b and "categories:" in b]
    assert len(policies) >= 2
    for i, block in enumerate(policies):
        load_policy(write(tmp_path, block, f"doc{i}.yaml"))
