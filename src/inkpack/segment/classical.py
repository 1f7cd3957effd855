"""A classical line finder for comparison: horizontal projection profile of the ink.

Peaks of the smoothed row profile are text lines; each line's baseline is the row under its
peak where the profile falls below 30 % of the peak, straight across the longest run of inked
columns in its band. No regions, no slant: single-column, level writing only.
"""

from __future__ import annotations

import cv2
import numpy as np

from inkpack.segment.data import normalize, page_scale
from inkpack.segment.postprocess import Line


class ClassicalSegmenter:
    def __init__(self, long_side: int = 768, min_gap_px: int = 15) -> None:
        self.long_side = long_side
        self.min_gap = min_gap_px

    def segment(self, gray: np.ndarray) -> list[Line]:
        h, w = gray.shape
        s = page_scale(w, h, self.long_side)
        small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        ink = (normalize(small) > 0.5).astype(np.float32)
        prof = cv2.GaussianBlur(ink.sum(1)[:, None], (1, 0), 4)[:, 0]
        if prof.max() <= 0:
            return []
        cand = [y for y in range(1, len(prof) - 1)
                if prof[y] >= prof[y - 1] and prof[y] > prof[y + 1] and prof[y] > 0.25 * prof.max()]
        peaks: list[int] = []
        for y in sorted(cand, key=lambda y: -prof[y]):
            if all(abs(y - q) >= self.min_gap for q in peaks):
                peaks.append(y)
        peaks.sort()
        if not peaks:
            return []
        sp = float(np.median(np.diff(peaks))) if len(peaks) > 1 else 2.0 * self.min_gap
        lines = []
        for yp in peaks:
            yb = yp
            while yb + 1 < len(prof) and yb - yp < 0.5 * sp and prof[yb] > 0.3 * prof[yp]:
                yb += 1
            band = ink[max(0, int(yb - 0.6 * sp)):int(yb + 0.2 * sp) + 1]
            cols = band.sum(0) > 0
            cols = cv2.morphologyEx(cols.astype(np.uint8)[None], cv2.MORPH_CLOSE, np.ones((1, 41), np.uint8))[0] > 0
            n, lab, st, _ = cv2.connectedComponentsWithStats(cols.astype(np.uint8)[None], connectivity=4)
            if n < 2:
                continue
            k = 1 + int(np.argmax(st[1:, cv2.CC_STAT_WIDTH]))
            x0, x1 = st[k, cv2.CC_STAT_LEFT], st[k, cv2.CC_STAT_LEFT] + st[k, cv2.CC_STAT_WIDTH] - 1
            if x1 - x0 < 10:
                continue
            base = np.array([[x0, yb], [x1, yb]], float) / s
            poly = np.array([[x0, yb - 0.7 * sp], [x1, yb - 0.7 * sp], [x1, yb + 0.3 * sp], [x0, yb + 0.3 * sp]]) / s
            poly[:, 1] = np.clip(poly[:, 1], 0, h - 1)
            lines.append(Line(base, poly, 0, len(lines)))
        return lines
