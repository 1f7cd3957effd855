"""Ink preprocessing and augmentation for the online recognizers (seed 001).

The pipeline of seed 001 / Zhang et al. (TPAMI 2017): (training only) randomly drop 30%
of the points and distort the shape a little; normalise position and size; remove
redundant points; turn each point into ``(x, y, dx, dy, pen_down, pen_up)`` where
``dx, dy`` go to the *next* point (across a pen lift too), ``pen_down = 1`` when the
next point is in the same stroke and ``pen_up = 1`` when the pen lifts after this
point. The last point gets ``dx = dy = 0``, ``pen_up = 1``.

Redundant-point removal is the sequential rule (walking each stroke with ``j`` = the
last kept point, drop point ``i`` if ``|p_i - p_j| < min_dist``, or if the turn from
``p_j -> p_i`` to ``p_i -> p_{i+1}`` has cosine ``> max_cos``; the first and last point
of every stroke are kept), computed exactly but without a Python loop over points: the
"next kept point" of every point is found in vectorised windows and the chain from the
first point is followed by pointer doubling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inkpack.data.ink import Ink

EPS = 1e-9


@dataclass
class Flat:
    """The pipeline's working form: all points ``xy [N, 2]``, ``t [N]``, stroke-end flags."""

    xy: np.ndarray
    t: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, ink: Ink) -> "Flat":
        pts, t = ink.to_points()
        return cls(pts[:, :2].copy(), t, pts[:, 2] != 0)

    def to_ink(self, like: Ink) -> Ink:
        ends = np.flatnonzero(self.last) + 1
        xyt = np.column_stack([self.xy, self.t])
        return like.with_strokes(np.split(xyt, ends[:-1]) if len(xyt) else [])

    def first(self) -> np.ndarray:
        return np.r_[True, self.last[:-1]] if len(self.last) else self.last.copy()

    def masked(self, keep: np.ndarray) -> "Flat":
        """Drop points; a stroke's end flag moves to its last kept point."""
        sid = np.cumsum(self.first()) - 1
        ks = sid[keep]
        last = np.r_[ks[1:] != ks[:-1], True] if len(ks) else ks.astype(bool)
        return Flat(self.xy[keep], self.t[keep], last)

    def with_xy(self, xy: np.ndarray) -> "Flat":
        return Flat(xy, self.t, self.last)


def _norm_flat(f: Flat, center: str, scale: str, target: float) -> Flat:
    xy = f.xy
    if len(xy) == 0:
        return f
    lo, hi = xy.min(0), xy.max(0)
    if center == "mean":
        c = xy.mean(0)
    elif center == "bbox":
        c = (lo + hi) / 2
    else:
        raise ValueError(f"unknown center {center!r}: use mean or bbox")
    stats = {
        "std": lambda: float(np.sqrt(((xy - xy.mean(0)) ** 2).sum(1).mean() / 2)),
        "y_std": lambda: float(xy[:, 1].std()),
        "height": lambda: float(hi[1] - lo[1]),
        "max_side": lambda: float((hi - lo).max()),
    }
    if scale not in stats:
        raise ValueError(f"unknown scale {scale!r}: use {', '.join(stats)}")
    s = stats[scale]()
    if s <= EPS:
        s = stats["max_side"]()
    return f.with_xy((xy - c) * (target / s if s > EPS else 1.0))


def normalize(ink: Ink, center: str = "mean", scale: str = "std", target: float = 1.0) -> Ink:
    """Centre and scale by one factor (aspect kept), so inks of any size look alike.

    ``center``: ``"mean"`` (point centroid) or ``"bbox"``. ``scale``: ``"std"`` (RMS of
    the x and y deviations, for characters), ``"y_std"`` (for text lines), ``"height"``
    or ``"max_side"`` of the bounding box; that statistic becomes ``target``. A
    degenerate statistic (a horizontal stroke's ``y_std``) falls back to ``"max_side"``,
    and a single point is only centred.
    """
    return _norm_flat(Flat.of(ink), center, scale, target).to_ink(ink)


def _next_kept(xy: np.ndarray, last: np.ndarray, min_dist: float, max_cos: float) -> np.ndarray:
    n = len(xy)
    idx = np.arange(n)
    stroke_last = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, n))))
    nxt = np.empty(n + 1, dtype=np.int64)
    nxt[n] = n
    nxt[:n][last] = idx[last] + 1
    step = np.zeros_like(xy)
    step[:-1] = xy[1:] - xy[:-1]
    step_len = np.hypot(step[:, 0], step[:, 1])
    pending = idx[~last]
    w = 16
    while len(pending):
        cand = pending[:, None] + np.arange(1, w + 1)[None, :]
        end = stroke_last[pending][:, None]
        valid = cand <= end
        cand = np.minimum(cand, end)
        v = xy[cand] - xy[pending][:, None, :]
        vlen = np.hypot(v[..., 0], v[..., 1])
        dot = (v * step[cand]).sum(-1)
        denom = vlen * step_len[cand]
        cos = np.where(denom > EPS, dot / np.maximum(denom, EPS), 1.0)
        ok = valid & ((cand == end) | ((vlen >= min_dist) & (cos <= max_cos)))
        found = ok.any(1)
        first = ok.argmax(1)
        rows = np.flatnonzero(found)
        nxt[pending[rows]] = cand[rows, first[rows]]
        pending = pending[~found]
        w *= 4
    return nxt


def _redundant_flat(f: Flat, min_dist: float, max_cos: float) -> np.ndarray:
    n = len(f.xy)
    if n == 0:
        return np.zeros(0, dtype=bool)
    jump = _next_kept(f.xy, f.last, min_dist, max_cos)
    reach = np.zeros(n + 1, dtype=bool)
    reach[:n] = f.first()  # the first point of every stroke is kept
    while True:  # pointer doubling: after k rounds, chains of length < 2**k are marked
        new = reach.copy()
        new[jump[np.flatnonzero(reach)]] = True
        jump = jump[jump]
        if (new == reach).all():
            break
        reach = new
    return reach[:n]


def redundant_mask(ink: Ink, min_dist: float, max_cos: float = 0.99) -> np.ndarray:
    """Boolean ``[N]``: True for the points ``remove_redundant`` keeps."""
    return _redundant_flat(Flat.of(ink), min_dist, max_cos)


def remove_redundant(ink: Ink, min_dist: float, max_cos: float = 0.99) -> Ink:
    """Drop points too close to the last kept one or nearly in line with their neighbours."""
    f = Flat.of(ink)
    return f.masked(_redundant_flat(f, min_dist, max_cos)).to_ink(ink)


def _drop_flat(f: Flat, rate: float, rng: np.random.Generator) -> Flat:
    n = len(f.xy)
    if n == 0 or rate <= 0:
        return f
    removable = np.flatnonzero(~f.first())
    k = min(int(round(rate * n)), len(removable))
    keep = np.ones(n, dtype=bool)
    if k:
        keep[removable[np.argpartition(rng.random(len(removable)), k - 1)[:k]]] = False
    return f.masked(keep)


def drop_points(ink: Ink, rate: float, rng: np.random.Generator) -> Ink:
    """Remove ``round(rate * N)`` random points; the first point of each stroke stays."""
    return _drop_flat(Flat.of(ink), rate, rng).to_ink(ink)


def _affine_flat(f: Flat, rng: np.random.Generator, rotate_deg: float, shear: float,
                 scale: float, aspect: float) -> Flat:
    if len(f.xy) == 0:
        return f
    th = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    sh = rng.uniform(-shear, shear)
    s = np.exp(rng.uniform(-scale, scale))
    a = np.exp(rng.uniform(-aspect, aspect))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    m = rot @ np.array([[1.0, sh], [0.0, 1.0]]) @ np.diag([s * a, s / a])
    c = f.xy.mean(0)
    return f.with_xy((f.xy - c) @ m.T + c)


def random_affine(ink: Ink, rng: np.random.Generator, rotate_deg: float = 8.0,
                  shear: float = 0.15, scale: float = 0.1, aspect: float = 0.1) -> Ink:
    """A small random rotation, shear, scale and aspect change about the centroid."""
    return _affine_flat(Flat.of(ink), rng, rotate_deg, shear, scale, aspect).to_ink(ink)


def jitter(ink: Ink, rng: np.random.Generator, sigma: float) -> Ink:
    """Independent Gaussian noise of ``sigma`` (in ink units) on every point."""
    f = Flat.of(ink)
    return f.with_xy(f.xy + rng.normal(0.0, sigma, f.xy.shape)).to_ink(ink)


def _features_flat(f: Flat) -> np.ndarray:
    n = len(f.xy)
    out = np.zeros((n, 6), dtype=np.float32)
    if n == 0:
        return out
    out[:, :2] = f.xy
    out[:-1, 2:4] = f.xy[1:] - f.xy[:-1]
    out[:, 4] = ~f.last
    out[:, 5] = f.last
    return out


def point_features(ink: Ink) -> np.ndarray:
    """``float32 [N, 6]``: x, y, dx, dy to the next point, pen_down, pen_up."""
    return _features_flat(Flat.of(ink))


@dataclass
class PreprocessConfig:
    """Defaults follow seed 001 for characters normalised to ``std = 1``.

    ``min_dist = 0.04`` is about 1% of a character's size (a character spans about
    3.5 std), the threshold of Zhang et al.; ``max_cos = 0.99`` likewise.
    """

    center: str = "mean"
    scale: str = "std"
    min_dist: float = 0.04
    max_cos: float = 0.99
    drop_rate: float = 0.3
    rotate_deg: float = 8.0
    shear: float = 0.15
    scale_jitter: float = 0.1
    aspect: float = 0.1
    jitter_sigma: float = 0.01


def preprocess(ink: Ink, cfg: PreprocessConfig | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Ink to features ``float32 [T, 6]``; ``rng`` given = training (augment), None = eval."""
    cfg = cfg or PreprocessConfig()
    f = Flat.of(ink)
    if rng is not None and cfg.drop_rate > 0:
        f = _drop_flat(f, cfg.drop_rate, rng)
    f = _norm_flat(f, cfg.center, cfg.scale, 1.0)
    if rng is not None:
        f = _affine_flat(f, rng, cfg.rotate_deg, cfg.shear, cfg.scale_jitter, cfg.aspect)
        if cfg.jitter_sigma > 0:
            f = f.with_xy(f.xy + rng.normal(0.0, cfg.jitter_sigma, f.xy.shape))
        f = _norm_flat(f, cfg.center, cfg.scale, 1.0)
    f = f.masked(_redundant_flat(f, cfg.min_dist, cfg.max_cos))
    return _features_flat(f)
