"""Resize, crop and pad as the model's training transform (open_clip's ``image_transform``), and
the squares the service scores of a frame that is not square (``media.crops``).

Output is ``uint8 [S, S, 3]`` per square: compact to queue and ship to a remote backend. Normalisation
(``/255``, mean, std, NCHW) happens batched in the encoder (:func:`normalize`), once per batch.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from moderator.models.manifest import Preprocess

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


CROPS = ("auto", "centre", "cover")
SQUARE_SLACK = 8  # a frame whose long side on the model's grid is within 1/8 of its short side is scored on its centre square alone
GRID_CAP = 8  # the longest grid a whole frame is averaged to for selection, in model squares
BOX_MARGIN = 4  # resized pixels beyond a square's box resized with it along the long axis (past a bicubic filter's reach)


class Preprocessor:
    """Turns an RGB image into the model's input squares, following the manifest.

    With ``resize_mode: shortest`` (CLIP's) the training transform keeps the centre square of a
    non-square image; ``crops`` says what the service scores of such a frame (:meth:`squares`):
    ``centre``, that square alone (what the model was trained on; the rest is never seen);
    ``cover``, squares along the long side, evenly spaced from one edge to the other and
    including the centre one; ``auto``, what the model's manifest says (``preprocess.crops``),
    else ``cover``. With ``cover``: at most ``max_crops`` (odd) squares, stepping at most half a
    square while ``max_crops`` allows (up to 3:1 at 5), so anything up to half a square across lies
    whole in one of them; longer frames are stepped more widely, and a frame too long for
    ``max_crops`` squares to reach every pixel is not covered (:meth:`covers`: an overflow for the
    policy). A frame within 1/``SQUARE_SLACK`` of square is scored on its centre square alone.

    Squares are cut from the resized frame as the training transform does while that is at most
    ``GRID_CAP`` squares long; a longer frame's squares are each resized from their own box of the
    frame, so the work and memory are bounded by the output, never by the resized whole: a 16000x1
    strip would be 3.6 million pixels wide at the model's scale (3.3 GB and 9 s for one 131-byte
    PNG, measured before this)."""

    def __init__(self, cfg: Preprocess, reducing_gap: float | None = None, crops: str = "centre", max_crops: int = 5) -> None:
        """``reducing_gap``: Pillow's two-step resize (a box ``reduce`` by an integer factor, then
        the model's filter over at least ``reducing_gap`` times the output size); None resizes in
        one step, exactly as the training transform."""
        if crops not in CROPS:
            raise ValueError(f"crops must be one of {CROPS}, got {crops!r}")
        # auto: what the model's manifest says it tolerates, else cover.
        self.crops = (cfg.crops or "cover") if crops == "auto" else crops
        if max_crops < 1 or max_crops % 2 == 0:
            raise ValueError(f"max_crops must be odd and at least 1 (the centre square is one of them), got {max_crops}")
        self.cfg = cfg
        self.size = cfg.image_size
        self._resample = _RESAMPLE[cfg.interpolation]
        self._gap = reducing_gap
        self.cover = self.crops == "cover" and cfg.resize_mode == "shortest"
        self.max_crops = max_crops if self.cover else 1
        self._cap = self.size * max(GRID_CAP, self.max_crops)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """The training transform: ``uint8 [S, S, 3]`` (the centre square, for ``shortest``)."""
        _rgb(img)
        if self.cfg.resize_mode != "shortest":
            return self.fit(img.resize(self.resized_size(img.size), self._resample, reducing_gap=self._gap))
        offsets, _ = self._offsets(img.size)
        return self._squares(img, offsets[len(offsets) // 2 : len(offsets) // 2 + 1])[0]

    def squares(self, img: Image.Image) -> np.ndarray:
        """Every square the service scores of a frame, ``uint8 [K, S, S, 3]`` (class docstring)."""
        _rgb(img)
        if self.cfg.resize_mode != "shortest":
            return self(img)[None]
        offsets, _ = self._offsets(img.size)
        return self._squares(img, offsets)

    def covers(self, size: tuple[int, int]) -> bool:
        """Whether :meth:`squares` of a frame of ``size`` reach every part of it (but for a
        frame within 1/``SQUARE_SLACK`` of square, whose centre square leaves at most half that
        at each end); always, with ``crops: centre``: its blind ends are the operator's choice."""
        return self._offsets(size)[1]

    def view(self, img: Image.Image) -> np.ndarray:
        """What frame selection compares (:mod:`moderator.media.frames`): the part of the frame the
        model sees, on the model's grid, each pixel the plain average of the source pixels under
        it (a box filter where the model's transform has its own, and cheaper). With ``cover``,
        the whole frame (its long side capped at ``GRID_CAP`` squares)."""
        _rgb(img)
        if self.cfg.resize_mode == "shortest" and not self.cover:
            offsets, _ = self._offsets(img.size)
            return np.asarray(img.resize((self.size, self.size), Image.Resampling.BOX, box=self._source_box(img.size, offsets[0])))
        size = self.grid_size(img.size)
        if size is None:  # so long that it is not covered: compared on a coarser grid
            w, h = self.resized_size(img.size)
            scale = self._cap / max(w, h)
            size = max(1, round(w * scale)), max(1, round(h * scale))
        return self.view_of_grid(img.resize(size, Image.Resampling.BOX))

    def grid_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The size a whole frame of ``size`` is scaled to for :meth:`view_of_grid` (the resized
        size), or None when its long side would be over ``GRID_CAP`` squares (and
        ``max_crops``): such a frame's view is made from the frame itself (:meth:`view`)."""
        w, h = self.resized_size(size)
        return (w, h) if max(w, h) <= self._cap else None

    def view_of_grid(self, grid: Image.Image) -> np.ndarray:
        """The view (:meth:`view`) of a frame already scaled to :meth:`grid_size`: video's, from
        FFmpeg's scaler."""
        if self.cover:
            return np.asarray(grid, dtype=np.uint8)
        return self.fit(grid)

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """What the transform resizes an image of ``size`` to, before cropping or padding."""
        mode = self.cfg.resize_mode
        if mode == "squash":
            return self.size, self.size
        if mode == "shortest":
            return shortest_side_size(size, self.size)
        return longest_side_size(size, self.size)

    def fit(self, resized: Image.Image) -> np.ndarray:
        """An image of :meth:`resized_size` (or :meth:`grid_size`) cropped or padded to the
        model's square, as uint8."""
        if self.cfg.resize_mode == "shortest":
            resized = self._center_crop(resized)
        elif self.cfg.resize_mode != "squash":
            resized = self._pad(resized)
        arr = np.asarray(resized, dtype=np.uint8)
        assert arr.shape == (self.size, self.size, 3), arr.shape  # internal invariant, not input validation
        return arr

    def _squares(self, img: Image.Image, offsets: list[int]) -> np.ndarray:
        """``uint8 [K, S, S, 3]``: the squares at ``offsets`` along the resized frame's long side.
        Cut from the resized frame, as the training transform does, when that is at most
        ``GRID_CAP`` squares long (exactly open_clip's output); beyond, each is resized from its own
        box of the frame (:meth:`_boxed`: within one level of the whole resize), so a long strip
        costs its squares, not its resized whole."""
        s = self.size
        rw, rh = shortest_side_size(img.size, s)
        if max(rw, rh) <= self._cap:
            resized = img.resize((rw, rh), self._resample, reducing_gap=self._gap)
            cut = [resized.crop((o, 0, o + s, s) if rw >= rh else (0, o, s, o + s)) for o in offsets]
        else:
            cut = [self._boxed(img, o) for o in offsets]
        out = np.stack([np.asarray(c, dtype=np.uint8) for c in cut])
        assert out.shape[1:] == (s, s, 3), out.shape  # internal invariant, not input validation
        return out

    def _boxed(self, img: Image.Image, offset: int) -> Image.Image:
        """The square at ``offset`` of the resized frame, resized from its box of the frame with
        ``BOX_MARGIN`` resized pixels more on each side along the long axis, then cut (Pillow
        filters the pixels at a box's edge a little differently). A tall frame's is cut from its
        wide transpose: Pillow's box resize along y differed by up to 25 levels at the box's first
        rows. Within two levels of the whole resize on photo-like pictures (tests/unit/test_crops.py)."""
        s = self.size
        rw, rh = shortest_side_size(img.size, s)
        if rh > rw:  # tall: cut as the wide transpose (Pillow's box resize along y differs by up to 25 levels, measured)
            return self._boxed(img.transpose(Image.Transpose.TRANSPOSE), offset).transpose(Image.Transpose.TRANSPOSE)
        lo, hi = max(0, offset - BOX_MARGIN), min(rw, offset + s + BOX_MARGIN)
        box = self._source_box(img.size, lo, hi)
        band = img.resize((hi - lo, s), self._resample, box=box, reducing_gap=self._gap)
        return band.crop((offset - lo, 0, offset - lo + s, s))

    def _source_box(self, size: tuple[int, int], start: int, end: int | None = None) -> tuple[float, float, float, float]:
        """The box of the frame that the resized frame's long side from ``start`` to ``end``
        (default: a square) comes from."""
        w, h = size
        rw, rh = shortest_side_size(size, self.size)
        end = start + self.size if end is None else end
        if rw >= rh:
            return start * w / rw, 0.0, end * w / rw, float(h)
        return 0.0, start * h / rh, float(w), end * h / rh

    def _offsets(self, size: tuple[int, int]) -> tuple[list[int], bool]:
        """Where the squares scored start along the resized frame's long side (``shortest``
        only), the centre one in the middle of the list (torchvision's ``center_crop``), and
        whether they cover the frame."""
        rw, rh = shortest_side_size(size, self.size)
        s = self.size
        extra = max(rw, rh) - s  # the resized long side beyond one square
        offsets = [int(round(extra / 2.0))]
        covered = not self.cover or extra <= s // SQUARE_SLACK
        if not covered:
            need = 1 + math.ceil(extra / (s / 2))  # steps of at most half a square
            n = min(need + (need % 2 == 0), self.max_crops)
            if n > 1:
                offsets = [int(round(j * extra / (n - 1))) for j in range(n)]  # n odd: the middle one is the centre
            covered = n > 1 and extra / (n - 1) <= s
        return offsets, covered

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


def _rgb(img: Image.Image) -> None:
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode}")


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
