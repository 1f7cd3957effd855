"""Pages scanned sideways or upside down: find the quarter turn that makes the text upright.

The segmenter was trained on upright pages. On a page turned by 90 or 270 degrees it finds
few, short and unsure baselines (mean baseline probability at most 0.83 on every val page
turned so, at least 0.928 upright). A page whose lines are unsure (mean probability under
``SURE_SCORE``) or few (under ``SURE_COVER`` page widths of baseline) is also segmented turned
by 90, 180 and 270 degrees; a sideways turn wins when its score, total baseline length (page
widths) x mean baseline probability x ink ratio (ink just above the baselines / just below:
x-height and ascenders against descenders), beats the page as it is and upside down by
``MIN_GAIN``, and of the two sideways turns the one with the higher probability x ink ratio is
taken. An upright page costs nothing more.

Upside down, the segmenter still finds the lines, slightly less sure and with a lower ink ratio:
telling that from an upright page needs a second segmentation, so it is done only on request
(``check_180``) or when all turns are tried anyway: the page is read upside down when that
turn's probability x ink ratio beats the page's by ``GAIN_180``.

Measured with the shipped segmenter on val, 34 pages each as is and turned by 90, 180
and 270 degrees: upright pages always kept (34/34), sideways ones all found (68/68), upside
down found in 33/34 with ``check_180`` (JDH_2_16_53_008 is a tie); train, every 4th page (67):
upright kept 67/67 (all on the fast path), turned by 90 degrees read upright in 66/67 (one read
upside down), upside down found in 64/67 with ``check_180``.

``k`` counts quarter turns counter-clockwise (``numpy.rot90``) that make the page upright.
"""

from __future__ import annotations

import numpy as np

SURE_SCORE = 0.92      # mean baseline probability of lines read the right way round (or upside down) ...
SURE_COVER = 1.0       # ... and their total length in page widths: fewer or less sure, all turns are tried
MIN_GAIN = 2.0         # a quarter turn must score this many times better than the page as it is
GAIN_180 = 1.1         # ... a half turn this many times (probability x ink ratio)


def turn(gray: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(gray, k)) if k % 4 else gray


def back(pts: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Points of the turned image (``turn(gray, k)``) in the original's pixels; ``size``: the
    original's (width, height)."""
    w, h = size
    x, y = pts[:, 0], pts[:, 1]
    k %= 4
    if k == 1:
        return np.stack([w - 1 - y, x], 1)
    if k == 2:
        return np.stack([w - 1 - x, h - 1 - y], 1)
    if k == 3:
        return np.stack([y, h - 1 - x], 1)
    return pts


def line_stats(gray: np.ndarray, lines, ratio: bool = True) -> tuple[float, float, float]:
    """(baseline length in page widths, mean baseline probability, ink above / below the
    baselines within 0.4 of each line's polygon height; 0 unless ``ratio``)."""
    if not lines:
        return 0.0, 0.0, 0.0
    cover = sum(float(ln.baseline[-1, 0] - ln.baseline[0, 0]) for ln in lines) / gray.shape[1]
    score = float(np.mean([ln.score for ln in lines]))
    if not ratio:
        return cover, score, 0.0
    ink = gray < np.median(gray) - 40
    h, w = ink.shape
    cs = np.concatenate([np.zeros((1, w), np.int64), np.cumsum(ink, 0, dtype=np.int64)])  # cs[y, x]: ink in rows < y
    up = down = 0
    for ln in lines:
        b = ln.baseline
        band = max(3, int(0.4 * (ln.polygon[:, 1].max() - ln.polygon[:, 1].min())))
        xs = np.arange(max(0, int(b[0, 0])), min(w, int(b[-1, 0]) + 1), 2)
        ys = np.clip(np.round(np.interp(xs, b[:, 0], b[:, 1])).astype(int), 0, h - 1)
        up += int((cs[ys, xs] - cs[np.maximum(0, ys - band), xs]).sum())
        down += int((cs[np.minimum(h, ys + band), xs] - cs[ys, xs]).sum())
    return cover, score, up / max(1, down)


def quality(stats: tuple[float, float, float]) -> float:
    cover, score, ratio = stats
    return cover * score * min(ratio, 20.0)


def _flip_wins(a: tuple, b: tuple) -> bool:
    """Line statistics ``b`` (the other way up) beat ``a``: probability x ink ratio by ``GAIN_180``."""
    return b[1] * b[2] > GAIN_180 * a[1] * a[2]


def upright(gray: np.ndarray, segment, check_180: bool = False) -> tuple[int, np.ndarray, list]:
    """(k, the page turned upright, its lines) with ``segment(gray) -> lines``."""
    lines = segment(gray)
    st = line_stats(gray, lines, ratio=False)
    if not lines and gray.std() < 8:   # a blank sheet
        return 0, gray, lines
    sure = bool(lines) and st[1] >= SURE_SCORE and st[0] >= SURE_COVER
    if sure and not check_180:
        return 0, gray, lines
    st = line_stats(gray, lines)
    turns = {0: (gray, lines, st)}
    for k in ((2,) if sure else (1, 2, 3)):
        g = turn(gray, k)
        ln = segment(g)
        turns[k] = (g, ln, line_stats(g, ln))
    pick = 0
    if not sure:
        q = {k: quality(t[2]) for k, t in turns.items()}
        side = max((1, 3), key=lambda k: q[k])
        if q[side] > MIN_GAIN * max(q[0], q[2], 1e-9):   # sideways: which way up?
            other = 4 - side
            pick = other if turns[other][1] and _flip_wins(turns[side][2], turns[other][2]) else side
    if pick == 0 and turns[2][1] and _flip_wins(st, turns[2][2]):
        pick = 2
    g, ln, _ = turns[pick]
    return pick, g, ln
