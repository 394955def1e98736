"""The checked-in default model (models/default) and policy (policies/default.yaml) on pictograms it
never saw. Figures are printed (pytest -s, or in the failure message).

Zero-shot classification scores each class by its prompt ensemble over counts (class_prompts) and
prints the single prompt's figure beside it. The floors guard the figures this model reached
(models/default/README.md: 0.995 seen, 0.908 unseen, scan precision 1.000 and recall
0.989-1.000, 0.07 % of pictures of none of the classes flagged), a little under them where the
default-model issue's targets are lower, and at the targets otherwise: zero-shot 0.95 on seen and
0.90 on unseen colour x object combinations, precision and recall 0.95 per category, at most 1 %
of the open set flagged."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from moderator.cli.main import main
from moderator.encoders.onnx import OnnxEncoder
from moderator.media.preprocess import Preprocessor
from moderator.pictograms import OBJECTS, class_prompt, class_prompts, generate
from moderator.pictograms.dataset import CATEGORIES, to_pixels
from tests.conftest import REPO

MODEL = REPO / "models" / "default"
POLICY = REPO / "policies" / "default.yaml"
CLASSES = list(OBJECTS)


@pytest.fixture(scope="module")
def encoder():
    enc = OnnxEncoder(MODEL)
    yield enc
    enc.close()


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n[default model] {line}")


def class_embeddings(encoder, ensemble: bool) -> np.ndarray:
    """One row per class: its single prompt's embedding, or the normalised mean over its prompts
    for one, two and three objects (class_prompts)."""
    if not ensemble:
        return encoder.encode_texts([class_prompt(c) for c in CLASSES])
    mean = np.stack([encoder.encode_texts(class_prompts(c)).mean(axis=0) for c in CLASSES])
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def zero_shot_accuracy(encoder, split: str, n: int, seed: int) -> tuple[float, float]:
    """(top-1 with the prompt ensemble over counts, top-1 with "a photo of a <class>" alone)."""
    samples = generate(n, split, seed)
    images = encoder.encode_images(to_pixels(samples, Preprocessor(encoder.info().preprocess)))
    accuracy = []
    for ensemble in (True, False):
        predicted = (images @ class_embeddings(encoder, ensemble).T).argmax(axis=1)
        accuracy.append(float(np.mean([CLASSES[p] == s.obj for p, s in zip(predicted, samples)])))
    return accuracy[0], accuracy[1]


def test_class_prompts_cover_one_two_and_three_objects():
    assert class_prompts("knife") == ["a photo of a knife", "a photo of two knives", "a photo of three knives"]


def test_zero_shot_classification_on_held_out_pictograms(encoder, capsys):
    acc, single = zero_shot_accuracy(encoder, "test", 750, seed=7)
    report(capsys, f"zero-shot top-1, held-out pictograms (seen colour x object): {acc:.3f} (issue target 0.95; single prompt {single:.3f})")
    assert acc >= 0.98  # 0.995 measured (1.000 before the open-set retraining); the target is 0.95


def test_zero_shot_classification_on_unseen_colour_object_combinations(encoder, capsys):
    acc, single = zero_shot_accuracy(encoder, "unseen", 750, seed=7)
    report(capsys, f"zero-shot top-1, unseen colour x object combinations: {acc:.3f} (issue target 0.90; single prompt {single:.3f})")
    assert acc >= 0.90  # 0.908 measured (0.951 before the open-set retraining); the target


def test_text_to_image_retrieval(encoder, capsys):
    samples = generate(200, "test", seed=11)
    images = encoder.encode_images(to_pixels(samples, Preprocessor(encoder.info().preprocess)))
    texts = encoder.encode_texts([s.caption for s in samples])
    best = (texts @ images.T).argmax(axis=1)
    exact = float(np.mean(best == np.arange(len(samples))))
    # Many pictograms share object, colour and count, so also count a hit when the retrieved
    # image matches everything the caption says.
    same = float(np.mean([(samples[b].obj, samples[b].count) == (s.obj, s.count) for b, s in zip(best, samples)]))
    report(capsys, f"text->image recall@1 over 200 held-out pairs: exact {exact:.3f}, same object and count {same:.3f}")
    assert exact >= 0.45 and same >= 0.95


def test_int8_variant_agrees_with_fp32(encoder, capsys):
    int8 = OnnxEncoder(MODEL, precision="int8")
    samples = generate(100, "test", seed=5)
    pixels = to_pixels(samples, Preprocessor(encoder.info().preprocess))
    cos = np.sum(encoder.encode_images(pixels) * int8.encode_images(pixels), axis=1)
    report(capsys, f"int8 vs fp32 image embeddings: mean cosine {cos.mean():.4f}, min {cos.min():.4f}")
    assert cos.min() >= 0.99  # 0.9989 measured


def test_scan_with_the_default_policy_catches_every_category(tmp_path, capsys):
    """End to end through `moderator scan`: JPEG files -> decode -> preprocess -> encode -> policy."""
    samples = generate(600, "test", seed=13)
    for i, s in enumerate(samples):
        (tmp_path / f"{i:04d}.jpg").write_bytes(s.jpeg)
    capsys.readouterr()
    assert main(["scan", str(tmp_path), "--json", "--model", str(MODEL), "--policy", str(POLICY)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == len(samples) and not any("error" in r for r in results)
    by_index = {int(r["path"].rsplit("/", 1)[-1][:4]): r for r in results}
    lines = []
    for category, objects in CATEGORIES.items():
        truth = np.asarray([samples[i].obj in objects for i in range(len(samples))])
        fired = np.asarray([next(c for c in by_index[i]["categories"] if c["name"] == category)["fired"] for i in range(len(samples))])
        precision = (truth & fired).sum() / max(1, fired.sum())
        recall = (truth & fired).sum() / truth.sum()
        lines.append(f"{category}: precision {precision:.3f} recall {recall:.3f} ({truth.sum()} positives)")
        assert precision >= 0.95 and recall >= 0.95, lines[-1]
    report(capsys, "moderator scan, policies/default.yaml, 600 held-out pictograms (issue target 0.95):\n  " + "\n  ".join(lines))


def test_policy_eval_on_the_labelled_examples(tmp_path, capsys):
    labels = REPO / "examples" / "labels.csv"
    png = tmp_path / "pr.png"
    assert main(["policy", "eval", str(POLICY), "--labels", str(labels), "--json", "--pr-curve", str(png), "--model", str(MODEL)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 120 and not result["skipped"]
    lines = []
    for name, cat in result["categories"].items():
        fires = cat["fires"]
        assert fires["tp"] + fires["fn"] == cat["positives"] > 0
        lines.append(f"{name}: precision {fires['precision']:.3f} recall {fires['recall']:.3f} f1 {fires['f1']:.3f}")
        assert fires["precision"] >= 0.9 and fires["recall"] >= 0.9, lines[-1]  # 0.93-1.00 / 0.91-1.00 measured
    report(capsys, "policy eval on examples/labels.csv (120 images, 30 of unseen colour x object):\n  " + "\n  ".join(lines))
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (640, 640)


def test_policy_calibrate_on_the_labelled_examples(tmp_path, capsys):
    from moderator.policy import load_policy

    labels = REPO / "examples" / "labels.csv"
    args = ["policy", "calibrate", str(POLICY), "--labels", str(labels), "--target-precision", "0.95", "--model", str(MODEL)]
    assert main(args) == 0
    assert "nothing written" in capsys.readouterr().out
    assert main([*args, "--patch"]) == 0
    patch, table = capsys.readouterr()
    assert patch.startswith(f"--- {POLICY}") and "+    review:" in patch, patch[:300]
    assert "CATEGORY" in table, "the table goes to stderr so stdout is only the diff"
    new = tmp_path / "calibrated.yaml"
    assert main([*args, "--out", str(new)]) == 0
    capsys.readouterr()
    before = {c.name: c.review for c in load_policy(POLICY).policy.categories}
    after = {c.name: c.review for c in load_policy(new).policy.categories}
    changed = [n for n in before if before[n] != after[n]]
    assert changed, "calibration on these labels moves at least one threshold"
    assert main(["policy", "eval", str(new), "--labels", str(labels), "--json", "--pr-curve", str(tmp_path / "p.png"), "--model", str(MODEL)]) == 0
    result = json.loads(capsys.readouterr().out)
    for name in changed:
        assert result["categories"][name]["fires"]["precision"] >= 0.95, f"{name}: calibrated for precision 0.95 on these labels"


def test_default_policy_inline_tests_run(capsys):
    code = main(["policy", "test", str(POLICY), "--model", str(MODEL)])
    out = capsys.readouterr().out
    passed, failed = (int(x) for x in re.search(r"(\d+) passed, (\d+) failed", out).groups())
    report(
        capsys,
        f"inline tests of policies/default.yaml: {passed} passed, {failed} failed\n  "
        + "\n  ".join(line for line in out.splitlines() if line.startswith("FAIL")),
    )
    assert passed + failed == 7 and passed >= 6 and code == (1 if failed else 0)  # 7 of 7 measured


OOD_PICTURES = 1400  # 200 of each of tests/ood.py's seven families


def open_set_figures(model_dir, policy_path, n: int = OOD_PICTURES, seed: int = 2026) -> tuple[int, dict, list]:
    """(pictures, {family: (flagged, total)}, the flagged ones as (family, decision, reasons)) for
    pictures of none of the classes (tests/ood.py) through the service's path: decode, preprocess,
    encode, the policy's scoring and thresholds."""
    from moderator.media.decode import DecodeLimits
    from moderator.policy import compile_policy, load_policy
    from moderator.processing import Processor
    from tests.ood import ood_images

    enc = OnnxEncoder(model_dir)
    processor = Processor(enc, compile_policy(load_policy(policy_path), enc), DecodeLimits())
    images = ood_images(n, seed)
    prepared = [processor.prepare(data) for _, data in images]
    assert not [p.error for p in prepared if p.error is not None]
    decisions = []
    for i in range(0, len(prepared), 64):
        decisions += processor.score_prepared(prepared[i : i + 64]).decisions
    families: dict[str, list[int]] = {}
    flagged = []
    for (family, _), d in zip(images, decisions):
        counts = families.setdefault(family, [0, 0])
        counts[1] += 1
        if d.decision != "allow":
            counts[0] += 1
            flagged.append((family, d.decision, d.reasons))
    return len(images), {f: tuple(c) for f, c in families.items()}, flagged


def test_pictures_of_none_of_the_classes_are_allowed(capsys):
    """The open set: solid colours, gradients, noise, shapes, textures, landscapes and photo-like
    scenes, none of which show a pictogram class, are allowed by the default policy (issue bar: at
    most 1 % review or block). The pictures come from a generator the model was not trained on."""
    n, families, flagged = open_set_figures(MODEL, POLICY)
    lines = [f"{family}: {k} of {total} flagged" for family, (k, total) in families.items()]
    report(
        capsys,
        f"open set, {n} pictures of none of the classes: {len(flagged)} flagged ({len(flagged) / n:.2%}; bar 1 %)\n  "
        + "\n  ".join(lines)
        + "".join(f"\n  flagged: {f} {a} {r}" for f, a, r in flagged[:10]),
    )
    assert len(flagged) / n <= 0.01, (families, flagged[:20])


def crop_figures(model_dir, policy_path, pictures: int = 3) -> dict[str, float]:
    """Share flagged (review or block) through the service's path, with each ``media.crops``: a
    moderated square at one end of a wide or tall picture, and benign pictures of 4:3 to 2:1
    (tests/wide.py; benchmarks/crops.py measures more of them, and the cost)."""
    import random

    from moderator.media.decode import DecodeLimits
    from moderator.pictograms.dataset import BENIGN, MODERATED
    from moderator.policy import compile_policy, load_policy
    from moderator.processing import Processor
    from tests.wide import ENDS, SHAPES, at_an_end, benign

    enc = OnnxEncoder(model_dir)
    policy = compile_policy(load_policy(policy_path), enc)
    rng = random.Random(7)
    attacks = [at_an_end(obj, size, rng)[0] for obj in MODERATED for size in ENDS for _ in range(pictures)]
    plain = [benign(size, rng) for size in SHAPES for _ in range(pictures * len(BENIGN))]
    out = {}
    for crops in ("centre", "cover"):
        processor = Processor(enc, policy, DecodeLimits(), crops=crops)
        for name, images in (("attack", attacks), ("benign", plain)):
            prepared = [processor.prepare(b) for b in images]
            decisions = [d for i in range(0, len(prepared), 64) for d in processor.score_prepared(prepared[i : i + 64]).decisions]
            out[f"{name}_{crops}"] = sum(d.decision != "allow" for d in decisions) / len(decisions)
    return out


def test_content_at_the_end_of_a_wide_picture_is_scored_with_cover(capsys):
    """The centre square the model was trained on never reaches the ends of a 16:9 or 2:1 picture:
    a moderated pictogram there passes it, and media.crops: cover flags it. This model's manifest
    says crops: centre all the same (media.crops: auto follows it): trained on whole pictograms, it
    takes benign objects cut by a square's edge for moderated ones, printed here (README.md)."""
    f = crop_figures(MODEL, POLICY)
    report(
        capsys,
        f"moderated square at one end of a wide picture: flagged {f['attack_cover']:.1%} with cover, {f['attack_centre']:.1%} with centre;"
        f" benign pictures of 4:3 to 2:1 flagged {f['benign_cover']:.1%} with cover, {f['benign_centre']:.1%} with centre",
    )
    assert f["attack_centre"] < 0.6, "the attack: most of it passes the centre square"
    assert f["attack_cover"] >= 0.95
    assert f["benign_centre"] <= 0.03, "what the manifest's centre keeps: benign pictures allowed (1 of 96 measured)"
