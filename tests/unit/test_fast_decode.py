"""media.fast_decode: large JPEGs at a reduced DCT scale and two-step resizes, against the exact
training transform. The figures (speed, agreement) are benchmarks/decode.py's; these tests hold
what must never move: the exact path is the training transform, the fast one decodes less but
never below what the model and PDQ need, and decisions on the examples are the same."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from moderator import bundled
from moderator.encoders.onnx import OnnxEncoder
from moderator.hashing.compute import PDQ_MIN_SIDE
from moderator.media.decode import DecodeLimits, decode_image
from moderator.media.frames import FrameLimits, decode_frames
from moderator.media.preprocess import Preprocessor
from moderator.policy import compile_policy, load_policy
from moderator.processing import KnownContentOptions, Processor
from tests.conftest import REPO
from tests.scenes import encode, scene


@pytest.fixture(scope="module")
def default():
    encoder = OnnxEncoder(bundled.model_dir())
    yield encoder, compile_policy(load_policy(bundled.policy_path()), encoder)
    encoder.close()


def processors(default, pdq: bool = True) -> tuple[Processor, Processor]:
    encoder, policy = default
    options = KnownContentOptions(pdq=pdq)
    return (
        Processor(encoder, policy, DecodeLimits(), known=options, fast_decode=False),
        Processor(encoder, policy, DecodeLimits(), known=options, fast_decode=True),
    )


def test_the_exact_path_is_the_training_transform(default):
    exact, _ = processors(default)
    data = encode(scene(3, (1600, 1200)), "JPEG", quality=90)
    want = Preprocessor(default[0].info().preprocess)(decode_image(data, DecodeLimits()))
    got = exact.prepare(data).pixels
    assert got is not None and np.array_equal(got[0], want)


@pytest.mark.parametrize("pdq", [True, False])
def test_a_large_jpeg_is_decoded_smaller_but_never_below_what_is_needed(default, pdq):
    _, fast = processors(default, pdq)
    seen: list[tuple[int, int]] = []

    def prepare(img: Image.Image) -> np.ndarray:
        seen.append(img.size)
        return fast.preprocessor(img)

    data = encode(scene(4, (4000, 3000)), "JPEG", quality=85)
    decode_frames(data, DecodeLimits(), FrameLimits(), prepare, None, fast.draft_side)
    (size,) = seen
    needed = max(2 * default[0].info().preprocess.image_size, PDQ_MIN_SIDE if pdq else 0)
    assert fast.draft_side == needed
    assert min(size) >= needed and size[0] < 4000, f"decoded at {size} for a shorter side of {needed}"
    # the largest reduction that still gives the needed side; libjpeg scales by 1/8 at most
    assert min(size) < 2 * needed or size == (4000 // 8, 3000 // 8), size


def test_png_and_small_jpegs_are_not_drafted(default):
    _, fast = processors(default)
    for data in (encode(scene(5, (2000, 1500)), "PNG"), encode(scene(6, (600, 400)), "JPEG")):
        sizes: list[tuple[int, int]] = []
        decode_frames(data, DecodeLimits(), FrameLimits(), lambda img, sizes=sizes: sizes.append(img.size) or fast.preprocessor(img), None, fast.draft_side)
        assert sizes[0] == Image.open(io.BytesIO(data)).size


def test_fast_and_exact_agree_on_large_photos_and_pictograms(default):
    encoder, _ = default
    exact, fast = processors(default)
    images = [encode(scene(i, (1920, 1080)), "JPEG", quality=85) for i in range(4)]
    a = encoder.encode_images(np.concatenate([exact.prepare(b).pixels for b in images]))
    b = encoder.encode_images(np.concatenate([fast.prepare(b).pixels for b in images]))
    assert float((a * b).sum(axis=1).min()) > 0.999


def test_decisions_on_the_examples_are_the_same_on_both_paths(default):
    exact, fast = processors(default)
    with (REPO / "examples" / "labels.csv").open() as fh:
        paths = [REPO / "examples" / r["path"] for r in csv.DictReader(fh)]
    data = [p.read_bytes() for p in paths]
    da = exact.score_prepared([exact.prepare(b) for b in data]).decisions
    db = fast.score_prepared([fast.prepare(b) for b in data]).decisions
    assert [d.decision for d in da] == [d.decision for d in db] and len(da) == 120


def test_moderator_hashes_computes_the_hash_the_service_computes(default):
    """A bank built with `moderator hashes compute` must hold the hash the service computes of the
    same file: both decode a large JPEG at the same reduced scale before PDQ."""
    from moderator.cli.hashes import service_draft_side
    from moderator.processing import hash_image
    from moderator.settings import load_settings

    _, fast = processors(default)
    data = encode(scene(6, (4000, 3000)), "JPEG", quality=85)
    prepared = fast.prepare(data)
    assert prepared.hashes is not None
    settings = load_settings(None)
    assert service_draft_side(settings) == fast.draft_side
    tool, _ = hash_image(data, DecodeLimits(), FrameLimits(), True, service_draft_side(settings))
    assert tool.pdq == prepared.hashes.pdq
    full, _ = hash_image(data, DecodeLimits(), FrameLimits(), True, None)  # what the tool did before: a full-size decode
    assert full.pdq != prepared.hashes.pdq
    off = settings.model_copy(update={"media": settings.media.model_copy(update={"fast_decode": False})})
    assert service_draft_side(off) is None
