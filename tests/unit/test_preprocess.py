from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from moderator.media.preprocess import Preprocessor, longest_side_size, normalize, shortest_side_size
from moderator.models.manifest import Preprocess

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def cfg(**kw):
    return Preprocess(image_size=kw.pop("image_size", 32), mean=MEAN, std=STD, **kw)


@pytest.mark.parametrize(("size", "want"), [((640, 480), (298, 224)), ((480, 640), (224, 298)), ((224, 224), (224, 224)), ((1000, 3), (74666, 224))])
def test_shortest_side_matches_torchvision_resize(size, want):
    assert shortest_side_size(size, 224) == want


def test_longest_side_keeps_ratio():
    assert longest_side_size((640, 480), 224) == (224, 168)


def test_shortest_resize_then_center_crop_takes_the_middle():
    img = Image.new("RGB", (96, 32), (0, 0, 0))
    img.paste((255, 0, 0), (32, 0, 64, 32))  # red middle third
    out = Preprocessor(cfg(interpolation="nearest"))(img)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 255).all(), "the centre crop of a wide image is its middle"


def test_longest_mode_pads_with_fill_colour():
    out = Preprocessor(cfg(resize_mode="longest", fill_color=7, interpolation="nearest"))(Image.new("RGB", (64, 32), (200, 200, 200)))
    assert (out[0, 0] == 7).all() and (out[16, 16] == 200).all()


def test_squash_uses_the_whole_image():
    img = Image.new("RGB", (96, 32), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 10, 32))
    out = Preprocessor(cfg(resize_mode="squash", interpolation="nearest"))(img)
    assert out[16, 0, 0] == 255, "squash keeps the left edge that a centre crop would cut"


def test_preprocess_matches_pil_reference_for_bicubic():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    out = Preprocessor(cfg(image_size=32))(img)
    w, h = img.size
    ref = img.resize((int(32 * w / h), 32), Image.Resampling.BICUBIC)
    left = int(round((ref.size[0] - 32) / 2.0))
    np.testing.assert_array_equal(out, np.asarray(ref.crop((left, 0, left + 32, 32))))


def test_non_rgb_input_is_a_programming_error():
    with pytest.raises(ValueError, match="RGB"):
        Preprocessor(cfg())(Image.new("L", (8, 8)))


def test_normalize_is_the_clip_formula():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    got = normalize(batch, MEAN, STD)
    want = ((batch.astype(np.float64) / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).transpose(0, 3, 1, 2)
    assert got.shape == (2, 3, 5, 5) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5
    with pytest.raises(ValueError):
        normalize(batch.astype(np.float32), MEAN, STD)
