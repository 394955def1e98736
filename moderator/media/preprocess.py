"""Resize, crop and pad exactly as the model's training transform (open_clip's ``image_transform``).

Output is ``uint8 [S, S, 3]``: compact to queue and ship to a remote backend. Normalisation
(``/255``, mean, std, NCHW) happens batched in the encoder (:func:`normalize`), once per batch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from moderator.models.manifest import Preprocess

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class Preprocessor:
    """Turns an RGB image into the model's input square, following the manifest."""

    def __init__(self, cfg: Preprocess, reducing_gap: float | None = None) -> None:
        """``reducing_gap``: Pillow's two-step resize (a box ``reduce`` by an integer factor, then
        the model's filter over at least ``reducing_gap`` times the output size); None resizes in
        one step, exactly as the training transform."""
        self.cfg = cfg
        self.size = cfg.image_size
        self._resample = _RESAMPLE[cfg.interpolation]
        self._gap = reducing_gap

    def __call__(self, img: Image.Image) -> np.ndarray:
        if img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {img.mode}")
        return self.fit(img.resize(self.resized_size(img.size), self._resample, reducing_gap=self._gap))

    def view(self, img: Image.Image) -> np.ndarray:
        """The model's input grid with each pixel the plain average of the source pixels under it
        (a box filter where the model's transform has its own, and cheaper): what frame selection
        compares (:mod:`moderator.media.frames`)."""
        if img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {img.mode}")
        return self.fit(img.resize(self.resized_size(img.size), Image.Resampling.BOX))

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """What the transform resizes an image of ``size`` to, before cropping or padding."""
        mode = self.cfg.resize_mode
        if mode == "squash":
            return self.size, self.size
        if mode == "shortest":
            return shortest_side_size(size, self.size)
        return longest_side_size(size, self.size)

    def fit(self, resized: Image.Image) -> np.ndarray:
        """An image of :meth:`resized_size` cropped or padded to the model's square, as uint8."""
        if self.cfg.resize_mode == "shortest":
            resized = self._center_crop(resized)
        elif self.cfg.resize_mode != "squash":
            resized = self._pad(resized)
        arr = np.asarray(resized, dtype=np.uint8)
        assert arr.shape == (self.size, self.size, 3), arr.shape  # internal invariant, not input validation
        return arr

    def _center_crop(self, img: Image.Image) -> Image.Image:
        # torchvision.transforms.functional.center_crop's rounding.
        w, h = img.size
        top = int(round((h - self.size) / 2.0))
        left = int(round((w - self.size) / 2.0))
        return img.crop((left, top, left + self.size, top + self.size))

    def _pad(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        canvas = Image.new("RGB", (self.size, self.size), (self.cfg.fill_color,) * 3)
        canvas.paste(img, ((self.size - w) // 2, (self.size - h) // 2))
        return canvas


def shortest_side_size(size: tuple[int, int], target: int) -> tuple[int, int]:
    """torchvision ``Resize(int)``: the short side becomes ``target``, the long side is truncated."""
    w, h = size
    if w <= h:
        return target, int(target * h / w)
    return int(target * w / h), target


def longest_side_size(size: tuple[int, int], target: int) -> tuple[int, int]:
    """open_clip ``ResizeKeepRatio(longest=1)``: the long side becomes ``target``."""
    w, h = size
    ratio = max(w, h) / target
    return max(1, round(w / ratio)), max(1, round(h / ratio))


def normalize(batch: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """``uint8 [N,S,S,3]`` -> ``float32 [N,3,S,S]``: ``(x/255 - mean) / std`` in one pass."""
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N,S,S,3], got {batch.dtype} {batch.shape}")
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).astype(np.float32)
    offset = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
    out = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), np.float32)
    for c in range(3):
        np.multiply(batch[..., c], scale[c], out=out[:, c], casting="unsafe")
        out[:, c] += offset[c]
    return out
