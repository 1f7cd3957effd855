"""Draw ink as a grayscale image: for looking at data and for offline models fed online ink.

The image is uint8 with **dark ink (0) on light paper (255)**, like a scan; models that
want ink = 1 take ``1 - img / 255``. Strokes are anti-aliased OpenCV polylines drawn
with 4 bits of sub-pixel precision; a single-point stroke is drawn as a dot of the pen's
width.
"""

from __future__ import annotations

import cv2
import numpy as np

from inkpack.data.ink import Ink
from inkpack.errors import InkpackError

_SHIFT = 4
_ONE = 1 << _SHIFT
MAX_SIDE = 16384


def render(
    ink: Ink,
    height: int | None = 64,
    scale: float | None = None,
    pen_width: float = 2.0,
    margin: int = 4,
    paper: int = 255,
    ink_value: int = 0,
) -> np.ndarray:
    """Ink to ``uint8 [H, W]``.

    Give ``height`` (the ink's bounding box is scaled to fit ``height - 2 * margin``,
    aspect kept) or ``scale`` (pixels per ink unit; the image size follows the ink).
    A flat ink (zero height) is drawn at ``scale = 1`` when only ``height`` is given.
    """
    if pen_width <= 0:
        raise InkpackError(f"render: pen_width must be positive, got {pen_width}")
    ink.check(f"render: {ink.name()}")
    x0, y0, x1, y1 = ink.bbox()
    half = pen_width / 2
    if scale is None:
        if height is None:
            raise InkpackError("render: give height or scale")
        inner = height - 2 * margin - pen_width
        if inner <= 0:
            raise InkpackError(f"render: height {height} leaves no room for margin and pen")
        scale = inner / (y1 - y0) if y1 > y0 else 1.0
        out_h = height
    else:
        out_h = int(np.ceil((y1 - y0) * scale + 2 * margin + pen_width)) + 1
    out_w = int(np.ceil((x1 - x0) * scale + 2 * margin + pen_width)) + 1
    if out_w > MAX_SIDE or out_h > MAX_SIDE:
        raise InkpackError(f"render: {ink.name()} would be {out_w}x{out_h} px; lower the scale")
    img = np.full((out_h, out_w), paper, dtype=np.uint8)
    # centre vertically when height is fixed and the ink is flatter than the box
    oy = margin + half + max(0.0, (out_h - 2 * margin - pen_width - (y1 - y0) * scale) / 2)
    ox = margin + half
    thick = max(1, int(round(pen_width)))
    for s in ink.strokes:
        p = np.empty((len(s), 2))
        p[:, 0] = (s[:, 0] - x0) * scale + ox
        p[:, 1] = (s[:, 1] - y0) * scale + oy
        q = np.rint(p * _ONE).astype(np.int32)
        if len(q) == 1 or (q == q[0]).all():
            r = max(1, int(round(half * _ONE)))
            cv2.circle(img, tuple(int(v) for v in q[0]), r, ink_value, -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.polylines(img, [q.reshape(-1, 1, 2)], False, ink_value, thick, cv2.LINE_AA, _SHIFT)
    return img
