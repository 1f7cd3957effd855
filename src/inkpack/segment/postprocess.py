"""Probability maps -> text lines (baseline polyline, bounding polygon), regions, reading order.

All work happens on the maps' own grid; ``maps_to_lines`` scales the result to page
pixels. Baselines are the connected components of the thresholded baseline map, reduced
to one point per column (probability-weighted mean row); collinear fragments are joined.
A line's polygon follows the line-region map in each column around its baseline, capped
by the neighbouring baselines (or a band from the median line spacing where the map is
empty). Lines go to the region component that holds their baseline (orphans form their
own regions); regions are read top to bottom, side-by-side ones left to right, and lines
within a region the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Line:
    baseline: np.ndarray   # [k, 2] float x, y, left to right
    polygon: np.ndarray    # [m, 2] float x, y (closed ring, not repeated)
    region: int = 0        # region index (regions numbered in reading order)
    order: int = 0         # position of the line on the page (reading order)
    score: float = 1.0     # mean baseline probability


@dataclass
class Params:
    baseline_thr: float = 0.5
    line_thr: float = 0.5
    region_thr: float = 0.5
    min_length: int = 8        # map px: shorter baselines are dropped
    join_gap: float = 0.8      # join fragments up to this many line spacings apart ...
    join_dy: float = 0.2       # ... whose ends differ by at most this many spacings in y
    pad_x: float = 0.15        # polygon reaches this many spacings beyond the baseline ends


def _columns(comp: np.ndarray, prob: np.ndarray, x0: int) -> np.ndarray:
    """[[x, y]] one point per column of a component mask (probability-weighted mean row)."""
    w = comp * prob
    s = w.sum(0)
    ok = s > 0
    rows = np.arange(comp.shape[0], dtype=np.float64)[:, None]
    y = (w * rows).sum(0)[ok] / s[ok]
    x = np.flatnonzero(ok).astype(np.float64) + x0
    return np.stack([x, y], 1)


def extract_baselines(prob: np.ndarray, p: Params = Params()) -> list[tuple[np.ndarray, float]]:
    """Per-column baseline points of each component, fragments joined; (points, score) pairs."""
    mask = (prob > p.baseline_thr).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if w < 2:
            continue
        comp = lab[y:y + h, x:x + w] == i
        pts = _columns(comp, prob[y:y + h, x:x + w], x)
        pts[:, 1] += y
        found.append([pts, float(prob[y:y + h, x:x + w][comp].mean()), int(area)])
    found.sort(key=lambda f: f[0][0, 0])
    spacing = median_spacing([f[0] for f in found], prob.shape[0])
    joined = True
    while joined:  # join a fragment to the nearest compatible one on its right
        joined = False
        for a in range(len(found)):
            pa = found[a][0]
            best, bd = None, None
            for b in range(len(found)):
                pb = found[b][0]
                if b == a or pb[0, 0] <= pa[-1, 0] - 2:
                    continue
                gap = pb[0, 0] - pa[-1, 0]
                dy = abs(pb[0, 1] - pa[-1, 1])
                if gap <= p.join_gap * spacing and dy <= p.join_dy * spacing and (bd is None or gap < bd):
                    best, bd = b, gap
            if best is not None:
                fa, fb = found[a], found[best]
                tot = fa[2] + fb[2]
                found[a] = [np.concatenate([pa, fb[0][fb[0][:, 0] > pa[-1, 0]]]),
                            (fa[1] * fa[2] + fb[1] * fb[2]) / tot, tot]
                del found[best]
                joined = True
                break
    return [(f[0], f[1]) for f in found if f[0][-1, 0] - f[0][0, 0] + 1 >= p.min_length]


def y_at(pts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Baseline y at the columns ``xs`` (NaN outside its x range)."""
    y = np.interp(xs, pts[:, 0], pts[:, 1])
    return np.where((xs >= pts[0, 0]) & (xs <= pts[-1, 0]), y, np.nan)


def median_spacing(bases: list[np.ndarray], height: int) -> float:
    """Median vertical distance between a baseline and the nearest one above it (same columns)."""
    gaps = []
    for i, a in enumerate(bases):
        xs = a[:, 0]
        ya = y_at(a, xs)
        best = np.full(len(xs), np.inf)
        for j, b in enumerate(bases):
            if j != i:
                d = ya - y_at(b, xs)
                best = np.where((d > 1) & (d < best), d, best)
        if np.isfinite(best).any():
            gaps.append(float(np.median(best[np.isfinite(best)])))
    return float(np.median(gaps)) if gaps else max(8.0, 0.05 * height)


def simplify(pts: np.ndarray, step: float = 4.0) -> np.ndarray:
    """Every ``step``-th column plus both ends, lightly smoothed in y."""
    if len(pts) > 4:
        k = min(5, len(pts) // 2 * 2 - 1)
        ys = np.convolve(np.pad(pts[:, 1], k // 2, mode="edge"), np.ones(k) / k, mode="valid")
        pts = np.stack([pts[:, 0], ys], 1)
    idx = sorted(set(np.arange(0, len(pts), max(1, int(step)))) | {len(pts) - 1})
    return pts[idx]


def line_polygon(base: np.ndarray, others: list[np.ndarray], line_mask: np.ndarray, spacing: float,
                 p: Params = Params()) -> np.ndarray:
    h, w = line_mask.shape
    pad = p.pad_x * spacing
    xs = np.arange(max(0.0, base[0, 0] - pad), min(w - 1.0, base[-1, 0] + pad) + 1, 2.0)
    if len(xs) < 2:
        xs = np.array([base[0, 0], base[-1, 0] + 1])
    yb = np.interp(xs, base[:, 0], base[:, 1])
    above = np.full(len(xs), spacing)
    below = np.full(len(xs), spacing)
    for o in others:
        d = yb - y_at(o, xs)
        above = np.where((d > 1) & (d < above), d, above)
        below = np.where((-d > 1) & (-d < below), -d, below)
    up_max, down_max = 0.9 * above, 0.55 * below
    top = yb - np.minimum(0.6 * spacing, up_max)
    bot = yb + np.minimum(0.25 * spacing, down_max)
    for k, (x, y) in enumerate(zip(xs, yb)):
        col = line_mask[:, int(round(x))]
        r = int(np.clip(round(y), 0, h - 1))
        lo, hi = int(max(0, np.floor(y - up_max[k]))), int(min(h - 1, np.ceil(y + down_max[k])))
        r0 = r - 1 if r > lo and not col[r] and col[r - 1] else r
        if not col[r0]:
            continue
        a = r0
        while a > lo and col[a - 1]:
            a -= 1
        b = r0
        while b < hi and col[b + 1]:
            b += 1
        top[k] = min(a, yb[k] - 0.3 * spacing)
        bot[k] = max(b + 1, yb[k] + 0.1 * spacing)
    if len(xs) >= 5:
        top = cv2.erode(top[None].astype(np.float32), np.ones((1, 5)))[0]   # min over 5 columns
        bot = cv2.dilate(bot[None].astype(np.float32), np.ones((1, 5)))[0]  # max over 5 columns
    top, bot = np.clip(top, 0, h), np.clip(bot, 0, h)
    ring = np.concatenate([np.stack([xs, top], 1), np.stack([xs, bot], 1)[::-1]])
    return simplify_ring(ring)


def simplify_ring(ring: np.ndarray, eps: float = 0.7) -> np.ndarray:
    approx = cv2.approxPolyDP(ring.astype(np.float32)[:, None], eps, True)[:, 0].astype(np.float64)
    return approx if len(approx) >= 3 else ring


def _before(a: tuple, b: tuple, overlap: float = 0.3) -> int:
    """Reading-order comparison of two boxes (x0, y0, x1, y1): side by side -> left first."""
    ov = min(a[3], b[3]) - max(a[1], b[1])
    if ov > overlap * max(1e-6, min(a[3] - a[1], b[3] - b[1])):
        return -1 if a[0] < b[0] else (1 if a[0] > b[0] else 0)
    ca, cb = a[1] + a[3], b[1] + b[3]
    return -1 if ca < cb else (1 if ca > cb else 0)


def order_boxes(boxes: list[tuple], overlap: float = 0.3) -> list[int]:
    return sorted(range(len(boxes)), key=functools.cmp_to_key(lambda i, j: _before(boxes[i], boxes[j], overlap)))


def group_regions(bases: list[np.ndarray], region_mask: np.ndarray | None, spacing: float) -> list[int]:
    """A region label per baseline: the region component holding most of its points, else own group."""
    n = len(bases)
    labels = [-1] * n
    if region_mask is not None and region_mask.any():
        k = 3
        closed = cv2.morphologyEx(region_mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
        _, lab = cv2.connectedComponents(closed, connectivity=8)
        h, w = lab.shape
        for i, b in enumerate(bases):
            xi = np.clip(np.round(b[:, 0]).astype(int), 0, w - 1)
            yi = np.clip(np.round(b[:, 1] - 0.2 * spacing).astype(int), 0, h - 1)
            v = lab[yi, xi]
            v = v[v > 0]
            if v.size >= 0.5 * len(b):
                labels[i] = int(np.bincount(v).argmax())
    orphan = 10**6
    for i in range(n):  # orphans: join an earlier orphan overlapping in x and close in y, else alone
        if labels[i] != -1:
            continue
        for j in range(i):
            if labels[j] >= orphan and _near(bases[i], bases[j], spacing):
                labels[i] = labels[j]
                break
        if labels[i] == -1:
            labels[i] = orphan + i
    return labels


def _near(a: np.ndarray, b: np.ndarray, spacing: float) -> bool:
    ox = min(a[-1, 0], b[-1, 0]) - max(a[0, 0], b[0, 0])
    return ox > 0 and abs(np.median(a[:, 1]) - np.median(b[:, 1])) < 1.6 * spacing


def maps_to_lines(maps: np.ndarray, to_page: float = 1.0, p: Params = Params(),
                  offset: float = 0.0) -> list[Line]:
    """maps [3, H, W] probabilities (baseline, line, region) -> lines in reading order.

    Map coordinates are multiplied by ``to_page`` (after adding ``offset``, e.g. 0.5 for
    pixel centres) to give page coordinates."""
    found = extract_baselines(maps[0], p)
    if not found:
        return []
    bases = [f[0] for f in found]
    spacing = median_spacing(bases, maps.shape[1])
    line_mask = maps[1] > p.line_thr
    polys = [line_polygon(b, bases[:i] + bases[i + 1:], line_mask, spacing, p) for i, b in enumerate(bases)]
    labels = group_regions(bases, maps[2] > p.region_thr if len(maps) > 2 else None, spacing)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(labels):
        groups.setdefault(g, []).append(i)
    gkeys = list(groups)

    def box(idx: list[int]) -> tuple:
        pts = np.concatenate([polys[i] for i in idx])
        return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())

    lines = []
    for r, gi in enumerate(order_boxes([box(groups[g]) for g in gkeys])):
        idx = groups[gkeys[gi]]
        lboxes = [(bases[i][0, 0], bases[i][:, 1].min() - 0.5 * spacing, bases[i][-1, 0], bases[i][:, 1].max())
                  for i in idx]
        for k in order_boxes(lboxes, overlap=0.5):
            i = idx[k]
            lines.append(Line(baseline=(simplify(bases[i]) + offset) * to_page,
                              polygon=(polys[i] + offset) * to_page, region=r, order=len(lines),
                              score=found[i][1]))
    return lines
