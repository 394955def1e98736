"""The service's decode + preprocess + normalise against open_clip's reference transform
(``image_transform_v2``, evaluation mode) on drawn images of many sizes, aspect ratios and modes.

Measured (docs/models.md): RGB, L and opaque RGBA agree to 5e-7 (float rounding of the two
normalisation formulas); CMYK to one uint8 level (the reference resizes before converting to
RGB); palette images differ because PIL resizes palette indices with nearest-neighbour in the
reference, while the service converts to RGB first, so it is held to the reference applied to
the RGB conversion.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from moderator.media.decode import DecodeLimits, decode_image
from moderator.media.preprocess import Preprocessor, normalize
from moderator.models.manifest import Preprocess
from moderator.pictograms.draw import render

pytestmark = [pytest.mark.export]

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
SIZES = [(224, 224), (640, 480), (480, 640), (37, 211), (1000, 10), (3, 3), (225, 223), (1920, 1080)]
ONE_LEVEL = 1 / (255 * min(STD)) + 1e-6


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "TIFF" if img.mode == "CMYK" else "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_service_preprocessing_matches_open_clip(resize_mode, interpolation):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = Preprocess(image_size=224, mean=MEAN, std=STD, interpolation=interpolation, resize_mode=resize_mode)
    reference = image_transform_v2(
        PreprocessCfg(size=224, mode="RGB", mean=MEAN, std=STD, interpolation=interpolation, resize_mode=resize_mode, fill_color=0), is_train=False
    )
    ours = Preprocessor(cfg)
    rng = random.Random(0)
    worst: dict[str, float] = {}
    for size in SIZES:
        drawn = render(rng.choice(["knife", "pill", "tree", "flame"]), "red", 2, "white", rng, size)
        for mode in ("RGB", "L", "RGBA", "CMYK", "P"):
            data = _encode(drawn.convert(mode))
            got = normalize(ours(decode_image(data, DecodeLimits()))[None], MEAN, STD)[0]
            src = Image.open(io.BytesIO(data))
            want = reference(src.convert("RGB") if mode == "P" else src).numpy()
            worst[mode] = max(worst.get(mode, 0.0), float(np.abs(got - want).max()))
    assert max(worst["RGB"], worst["L"], worst["RGBA"], worst["P"]) <= 1e-6, worst
    if resize_mode != "longest":  # the reference pads CMYK with CMYK zeros: white, not fill_color
        assert worst["CMYK"] <= ONE_LEVEL, worst
