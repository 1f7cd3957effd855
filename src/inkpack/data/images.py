"""Line images: safe loading, polarity/contrast normalisation, resizing, augmentation.

Models see float32 images with ink = 1 and paper = 0 at a fixed height, so that zero
padding is "blank paper" and the true width is all a model needs to know.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from inkpack.errors import BadSampleError

DEFAULT_MAX_PIXELS = 40_000_000
# PIL's own bomb check raises a warning at half of this; we check explicitly instead.
Image.MAX_IMAGE_PIXELS = None


def _open(path_or_bytes: str | os.PathLike | bytes, name: str) -> Image.Image:
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            if not path_or_bytes:
                raise BadSampleError(f"{name}: empty image data")
            return Image.open(io.BytesIO(path_or_bytes))
        if not os.path.exists(path_or_bytes):
            raise BadSampleError(f"{name}: file not found")
        if os.path.getsize(path_or_bytes) == 0:
            raise BadSampleError(f"{name}: empty file")
        return Image.open(path_or_bytes)
    except UnidentifiedImageError:
        raise BadSampleError(f"{name}: not an image (unrecognised format)") from None
    except OSError as e:
        raise BadSampleError(f"{name}: cannot read image ({e})") from None


def load_gray(
    src: str | os.PathLike | bytes,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file (or bytes) to a 2-D uint8 grayscale array.

    Size is checked from the header before decoding, so a decompression bomb is
    refused without allocating it.
    """
    name = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "<image>")
    img = _open(src, name)
    w, h = img.size
    if w * h > max_pixels:
        raise BadSampleError(f"{name}: image too large ({w}x{h} = {w * h} pixels > limit {max_pixels})")
    if w < 1 or h < 1:
        raise BadSampleError(f"{name}: image has no pixels ({w}x{h})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(bg, img)
            gray = img.convert("L")
            gray.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(f"{name}: truncated or corrupt image ({e})") from None
    return np.asarray(gray, dtype=np.uint8)


def to_ink(gray: np.ndarray) -> np.ndarray:
    """uint8 gray → float32 with ink = 1, paper = 0, contrast-stretched.

    The paper level is the median (most pixels of a line image are paper); if the
    median is dark the image is light-on-dark and is inverted first.
    """
    if gray.dtype == np.uint8 and gray.size:
        return _to_ink_u8(gray)
    g = gray.astype(np.float32)
    if float(np.median(g)) < 128.0:
        g = 255.0 - g
    paper = float(np.percentile(g, 60))
    ink = float(np.percentile(g, 1))
    span = max(paper - ink, 16.0)
    out = (paper - g) / span
    return np.clip(out, 0.0, 1.0)


def _percentile_u8(cum: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) from the cumulative histogram of uint8 values."""
    n = int(cum[-1])
    r = q / 100.0 * (n - 1)
    lo, hi = int(np.floor(r)), int(np.ceil(r))
    v_lo, v_hi = int(np.searchsorted(cum, lo, side="right")), int(np.searchsorted(cum, hi, side="right"))
    return v_lo + (v_hi - v_lo) * (r - lo)


def _to_ink_u8(gray: np.ndarray) -> np.ndarray:
    """:func:`to_ink` for uint8 input in O(pixels): the statistics from a 256-bin histogram,
    the pixel map as a 256-entry lookup table (the float path's values; several times faster
    on a full-resolution line scan, where the percentiles' partial sorts dominated)."""
    hist = np.bincount(gray.ravel(), minlength=256)
    vals = np.arange(256, dtype=np.float32)
    if _percentile_u8(np.cumsum(hist), 50) < 128.0:  # light on dark: work on 255 - gray
        hist, vals = hist[::-1], 255.0 - vals
    cum = np.cumsum(hist)
    paper, ink = _percentile_u8(cum, 60), _percentile_u8(cum, 1)
    span = max(paper - ink, 16.0)
    table = np.clip((paper - vals) / span, 0.0, 1.0).astype(np.float32)
    return table[gray]


def resize_height(img: np.ndarray, height: int) -> np.ndarray:
    """Scale to ``height`` keeping the aspect ratio (width at least 1)."""
    h, w = img.shape[:2]
    if h == height:
        return img
    new_w = max(1, int(round(w * height / h)))
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, height), interpolation=interp)


def prepare_line(gray: np.ndarray, height: int) -> np.ndarray:
    """The evaluation-time pipeline: normalise polarity/contrast, then resize."""
    return resize_height(to_ink(gray), height)


@dataclass
class AugmentConfig:
    """Training augmentation; all probabilities per line. ``enabled=False`` is identity."""

    enabled: bool = True
    p_affine: float = 0.7
    max_rotate: float = 1.5  # degrees
    max_shear: float = 0.3  # x += shear * y (relative)
    scale: tuple[float, float] = (0.85, 1.15)  # horizontal stretch
    p_elastic: float = 0.3
    elastic_alpha: float = 1.5  # displacement in pixels
    elastic_sigma: float = 6.0
    p_blur: float = 0.2
    p_morph: float = 0.3
    p_contrast: float = 0.5


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Small warps, blur, erosion/dilation and contrast changes on an ink=1 image."""
    if not cfg.enabled:
        return img
    h, w = img.shape
    out = img
    if rng.random() < cfg.p_affine:
        sx = rng.uniform(*cfg.scale)
        shear = rng.uniform(-cfg.max_shear, cfg.max_shear)
        ang = np.deg2rad(rng.uniform(-cfg.max_rotate, cfg.max_rotate))
        new_w = max(4, int(round(w * sx + abs(shear) * h)))
        c, s = np.cos(ang), np.sin(ang)
        m = np.array([[sx * c, -s + shear, 0.0], [s * sx, c, 0.0]], dtype=np.float32)
        # keep the content inside: shift so that the warped corners start at x >= 0
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float32) @ m.T
        m[0, 2] -= corners[:, 0].min()
        m[1, 2] -= corners[:, 1].min() - 0.0
        m[1, 2] += (h - (corners[:, 1].max() - corners[:, 1].min())) / 2.0
        out = cv2.warpAffine(out, m, (new_w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < cfg.p_elastic:
        hh, ww = out.shape
        small = (max(2, ww // 16), max(2, hh // 16))
        dx = cv2.resize(rng.standard_normal((small[1], small[0])).astype(np.float32), (ww, hh))
        dy = cv2.resize(rng.standard_normal((small[1], small[0])).astype(np.float32), (ww, hh))
        xs, ys = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
        a = cfg.elastic_alpha
        out = cv2.remap(out, xs + a * dx, ys + a * dy, cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < cfg.p_morph:
        k = np.ones((2, 2), np.uint8)
        out = cv2.dilate(out, k) if rng.random() < 0.5 else cv2.erode(out, k)
    if rng.random() < cfg.p_contrast:
        out = np.clip(out * rng.uniform(0.6, 1.2) + rng.uniform(-0.05, 0.05), 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)
