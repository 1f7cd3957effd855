"""Line images: safe loading, polarity/contrast normalisation, resizing (augmentation:
:mod:`inkpack.data.augment`).

Models see float32 images with ink = 1 and paper = 0 at a fixed height, so that zero
padding is "blank paper" and the true width is all a model needs to know.
"""

from __future__ import annotations

import io
import os
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from inkpack.errors import BadSampleError, InputTooLargeError
from inkpack.limits import env_limit

DEFAULT_MAX_PIXELS = 40_000_000
# The widest line a line model is given, in pixels *after* scaling to the model's height
# (a 20,000 x 1 px image scaled to height 48 would be 960,000 px wide and cost gigabytes).
# 16,000 px is 330 times the height at 48 px, far beyond a real line (a full-width line of a
# page scan is under 4,000 px at height 48), and the shipped models recognize it in under
# 1 GB. Override per call (``max_width=``) or per process (``INKPACK_MAX_LINE_WIDTH``).
DEFAULT_MAX_LINE_WIDTH = 16_000
MAX_LINE_WIDTH_ENV = "INKPACK_MAX_LINE_WIDTH"
# PIL's own bomb check raises a warning at half of this; we check explicitly instead.
Image.MAX_IMAGE_PIXELS = None

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Modes wider than 8 bits per sample: 16-bit gray (PNG/TIFF), 32-bit int, 32-bit float.
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "P", "RGBa"}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__


def _open(path_or_bytes: str | os.PathLike | bytes, name: str) -> Image.Image:
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            if not path_or_bytes:
                raise BadSampleError(f"{name}: empty image data")
            return Image.open(io.BytesIO(path_or_bytes))
        if not os.path.exists(path_or_bytes):
            raise BadSampleError(f"{name}: file not found")
        if os.path.isdir(path_or_bytes):
            raise BadSampleError(f"{name}: is a folder, not an image")
        if os.path.getsize(path_or_bytes) == 0:
            raise BadSampleError(f"{name}: empty file")
        return Image.open(path_or_bytes)
    except UnidentifiedImageError:
        raise BadSampleError(f"{name}: not an image (unrecognised format)") from None
    # ValueError: e.g. a PNG text chunk that decompresses beyond PngImagePlugin.MAX_TEXT_CHUNK;
    # SyntaxError, struct.error and friends: damaged headers.
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
        raise BadSampleError(f"{name}: cannot read image ({_one_line(e)})") from None


def max_line_width() -> int:
    """The default limit on a line's width after scaling: ``INKPACK_MAX_LINE_WIDTH`` or 16,000 px."""
    return env_limit(MAX_LINE_WIDTH_ENV, DEFAULT_MAX_LINE_WIDTH, "pixels")


def scaled_width(w: int, h: int, height: int) -> int:
    """The width of a ``w x h`` image scaled to ``height`` (what :func:`resize_height` makes)."""
    return max(1, int(round(w * height / h)))


def check_line_size(w: int, h: int, height: int, name: str | None = None, max_width: int | None = None) -> int:
    """The scaled width of a ``w x h`` line at ``height``; ``InputTooLargeError`` above the limit.

    Computed from the sizes only, so a caller can refuse an image from its header, before
    anything of the scaled size is allocated. The message starts with ``name: `` if given.
    """
    limit = max_line_width() if max_width is None else int(max_width)
    where = f"{name}: " if name else ""
    if h < 1 or w < 1:
        raise BadSampleError(f"{where}image has no pixels ({w}x{h})")
    new_w = scaled_width(w, h, height)
    if new_w > limit:
        raise InputTooLargeError(
            f"{where}line image too wide: {w}x{h} px would be {new_w} px wide at the model's height "
            f"{height} (limit {limit} px; is it a line? raise the limit with {MAX_LINE_WIDTH_ENV})"
        )
    return new_w


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when absent or unreadable (a damaged EXIF block is ignored)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged EXIF; ignore the tag
        return 1
    return value if value in _UPRIGHT else 1


def upright_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as shown, after its EXIF orientation."""
    w, h = img.size
    return (h, w) if _orientation(img) >= 5 else (w, h)


def _wide_to_u8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit gray to uint8, stretched over the values actually used (a 12-bit scan in a
    16-bit file must not become black, nor 16-bit paper all white). A constant image keeps its
    place in the nominal range (0..65535 for integers, 0..1 for floats)."""
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi > lo:
        out = (a - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    else:
        full = 1.0 if mode == "F" else 65535.0
        out = np.full(a.shape, np.clip(lo / full, 0.0, 1.0) * 255.0, np.float32)
    return np.round(out).astype(np.uint8)


def _decode(img: Image.Image) -> np.ndarray:
    """The image's pixels as uint8 gray; transparency composited on white paper."""
    if img.mode in _WIDE_MODES:
        return _wide_to_u8(np.asarray(img), img.mode)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    elif img.mode not in ("L", "1", "RGB"):  # CMYK, YCbCr, HSV, ...: through RGB, as viewers do
        img = img.convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.uint8)


def load_gray(
    src: str | os.PathLike | bytes,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    height: int | None = None,
    max_width: int | None = None,
) -> np.ndarray:
    """Decode an image file (or bytes) to a 2-D uint8 grayscale array, upright.

    Size is checked from the header before decoding, so a decompression bomb is refused
    without allocating it; given the model ``height``, so is a line whose width after scaling
    exceeds ``max_width`` (default :func:`max_line_width`), with ``InputTooLargeError``.
    16-bit and float gray are scaled to 8 bits over the range they use; palette, alpha
    (on white), CMYK and other modes are converted as viewers show them; the EXIF orientation
    is applied (``ImageOps.exif_transpose``'s transposes).
    """
    name = name or (str(src) if not isinstance(src, (bytes, bytearray)) else "<image>")
    with warnings.catch_warnings():  # e.g. "Corrupt EXIF data" while a JPEG header is read
        warnings.simplefilter("ignore")
        img = _open(src, name)
    try:
        return _decode_checked(img, name, max_pixels, height, max_width)
    finally:
        img.close()  # also when refused before decoding: no open file left to the collector


def _decode_checked(img: Image.Image, name: str, max_pixels: int, height: int | None,
                    max_width: int | None) -> np.ndarray:
    w, h = img.size
    if w * h > max_pixels:
        raise InputTooLargeError(f"{name}: image too large ({w}x{h} = {w * h} pixels > limit {max_pixels})")
    if w < 1 or h < 1:
        raise BadSampleError(f"{name}: image has no pixels ({w}x{h})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            orient = _orientation(img)
            if height is not None:
                check_line_size(*((h, w) if orient >= 5 else (w, h)), height, name, max_width)
            img.load()
            if orient != 1:
                img = img.transpose(_UPRIGHT[orient])
            gray = _decode(img)
    except BadSampleError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
        raise BadSampleError(f"{name}: truncated or corrupt image ({_one_line(e)})") from None
    return gray


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
    new_w = scaled_width(w, h, height)
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, height), interpolation=interp)


def prepare_line(gray: np.ndarray, height: int, name: str | None = None, max_width: int | None = None) -> np.ndarray:
    """The evaluation-time pipeline: normalise polarity/contrast, then resize.

    The width after scaling is checked first (:func:`check_line_size`), so an extreme aspect
    ratio is refused with ``InputTooLargeError`` before anything is allocated.
    """
    if gray.ndim != 2:
        raise BadSampleError(f"{name or 'image'}: a line image must be 2-D gray, got shape {gray.shape}")
    check_line_size(gray.shape[1], gray.shape[0], height, name, max_width)
    return resize_height(to_ink(gray), height)


MIN_LINE_ASPECT = 1.5  # width / height below which an image is doubtful as one text line
_CHECK_PIXELS = 4_000_000  # line_image_warnings looks at a copy of at most this many pixels


class LineImageWarning(UserWarning):
    """An image given to a line recognizer does not look like one text line."""


def line_image_warnings(gray: np.ndarray) -> list[str]:
    """Reasons to doubt that ``gray`` (2-D uint8, as :func:`load_gray` returns) is one text line.

    Each reason is one line without the file name (the caller prefixes it); the list is empty
    for an ordinary line image. A line recognizer given a page or a rotated line returns a
    short guess ("t") that is not worth trusting; these are the signs:

    * portrait shape (height > width): a page, or a line rotated by 90 degrees;
    * three or more separate bands of ink rows (stacked text lines), or a nearly square image
      (width/height < ``MIN_LINE_ASPECT``) with two or more;
    * three or more narrow bands of ink columns (text lines running vertically: rotated);
    * no ink at all (blank or uniform image).

    A nearly square image alone is not flagged: short lines ("1", "99") are; on the 689
    validation lines of the Hooker set this flags 7 one- or two-character lines as portrait.
    """
    if gray.ndim != 2 or gray.size == 0:
        return [f"not a 2-D gray image (shape {gray.shape})"]
    h, w = gray.shape
    out = []
    if h > w:
        out.append(f"portrait image ({w}x{h} px): a text line is wider than high; is it a page or a "
                   "line rotated by 90 degrees? (the line recognizer reads one horizontal line)")
    scale = min(1.0, float(np.sqrt(_CHECK_PIXELS / (h * w))))
    small = gray if scale >= 1.0 else cv2.resize(
        gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    g = small.astype(np.float32)
    if float(np.median(g)) < 128.0:  # light on dark, as to_ink decides
        g = 255.0 - g
    contrast = float(np.percentile(g, 60)) - float(np.percentile(g, 0.1))
    ink = to_ink(small) > 0.5
    if contrast < 24.0 or int(ink.sum()) < 8:
        out.append(f"no ink found (blank or nearly uniform image: the darkest pixels are within "
                   f"{contrast:.0f} gray levels of the paper)")
        return out
    bands = _ink_bands(ink)
    if bands >= 3 or (bands >= 2 and w < MIN_LINE_ASPECT * h):
        out.append(f"{bands} separate bands of ink rows, like stacked text lines ({w}x{h} px): the line "
                   "recognizer reads one line (segment the page first, e.g. recognize its PAGE-XML)")
    columns = _ink_bands(ink.T, max_thickness=0.1)
    if columns >= 3:
        out.append(f"{columns} narrow bands of ink columns, like text lines running vertically: is the "
                   "image rotated by 90 degrees?")
    return out


def _ink_bands(ink: np.ndarray, max_thickness: float = float("inf")) -> int:
    """Runs of rows dense with ink (at least 30% of the 90th percentile row's ink), counting
    those at least 40% as tall as the tallest run, so that i-dots, accents, descenders or an
    underline beside one line do not count as lines; 0 if the tallest run is over
    ``max_thickness`` times the rows' length (used on columns: the words of a line are wide,
    the lines of a rotated page narrow; on the 689 Hooker validation lines no column run is
    under 10% of the height, on 30 of their 34 pages turned by 90 degrees 3 or more are)."""
    r = ink.mean(1)
    rows = r >= max(0.3 * float(np.percentile(r, 90)), 2.0 / ink.shape[1])
    edges = np.flatnonzero(np.diff(np.r_[0, rows.astype(np.int8), 0]))
    heights = edges[1::2] - edges[0::2]
    if len(heights) == 0 or heights.max() > max_thickness * ink.shape[1]:
        return 0
    return int((heights >= max(2, 0.4 * heights.max())).sum())


def warn_line_image(gray: np.ndarray, name: str = "image", stacklevel: int = 2) -> list[str]:
    """:func:`line_image_warnings`, each issued as a :class:`LineImageWarning` naming ``name``."""
    msgs = line_image_warnings(gray)
    for m in msgs:
        warnings.warn(f"{name}: {m}", LineImageWarning, stacklevel=stacklevel)
    return msgs
