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
"next kept point" of every point is found in vectorised windows of 16 and 64 points (in
blocks of bounded size), the rare points whose successor lies further on are resolved by a
scan only where the chain from the first point meets them, and the chain is followed by
pointer doubling. Time and memory are linear in the points (99,999 points on one spot:
about 1 s and 90 MB; the former all-points windows needed a (99742, 1024, 2) array), and
an ink over ``inkpack.data.ink.max_ink_points()`` is refused with ``InputTooLargeError``.

``PreprocessConfig.features = "bezier"`` replaces the per-point rows by one row of 10 features
per fitted cubic Bézier curve (:mod:`inkpack.data.ink_bezier`, after Carbune et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inkpack.data.ink import Ink, check_num_points
from inkpack.errors import ConfigError

EPS = 1e-9
FEATURE_KINDS = {"points": 6, "bezier": 10}  # features: the width of a feature row


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


_WINDOWS = (16, 64)  # vectorised look-ahead rounds over all points
_CELLS = 1 << 16  # candidate cells per vectorised block: bounds the working memory


def _rule(xy, step, step_len, j, cand, end, min_dist, max_cos):
    """Whether candidate ``cand`` may follow kept point ``j`` (``j`` broadcast against ``cand``)."""
    v = xy[cand] - xy[j]
    vlen = np.hypot(v[..., 0], v[..., 1])
    dot = (v * step[cand]).sum(-1)
    denom = vlen * step_len[cand]
    cos = np.where(denom > EPS, dot / np.maximum(denom, EPS), 1.0)
    return (cand == end) | ((vlen >= min_dist) & (cos <= max_cos))


def _next_kept(xy: np.ndarray, last: np.ndarray, min_dist: float, max_cos: float):
    """``nxt [N + 1]``: for every point, the point kept after it were it the last kept one
    (a stroke's last point -> the next stroke's first), found within ``_WINDOWS[-1]`` points;
    ``-1`` where it lies further on (resolved later, only where the chain needs it). Works in
    blocks of ``_CELLS`` candidates, so memory is linear in the number of points."""
    n = len(xy)
    idx = np.arange(n)
    stroke_last = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, n))))
    nxt = np.full(n + 1, -1, dtype=np.int64)
    nxt[n] = n
    nxt[:n][last] = idx[last] + 1
    step = np.zeros_like(xy)
    step[:-1] = xy[1:] - xy[:-1]
    step_len = np.hypot(step[:, 0], step[:, 1])
    pending = idx[~last]
    for w in _WINDOWS:
        rows, still = max(1, _CELLS // w), []
        for s in range(0, len(pending), rows):
            p = pending[s : s + rows]
            cand = p[:, None] + np.arange(1, w + 1)[None, :]
            end = stroke_last[p][:, None]
            valid = cand <= end
            cand = np.minimum(cand, end)
            ok = valid & _rule(xy, step, step_len, p[:, None], cand, end, min_dist, max_cos)
            found = ok.any(1)
            first = ok.argmax(1)
            r = np.flatnonzero(found)
            nxt[p[r]] = cand[r, first[r]]
            still.append(p[~found])
        pending = np.concatenate(still) if still else pending
    return nxt, stroke_last, step, step_len


def _search(j, xy, step, step_len, stroke_last, min_dist, max_cos) -> int:
    """The point kept after ``j`` when it is more than ``_WINDOWS[-1]`` points on: a scan in
    doubling windows, O(distance) time and memory."""
    end = int(stroke_last[j])
    lo, w = j + _WINDOWS[-1] + 1, 4 * _WINDOWS[-1]
    while True:
        cand = np.arange(lo, min(lo + w, end + 1))
        ok = _rule(xy, step, step_len, j, cand, end, min_dist, max_cos)
        if ok.any():
            return int(cand[ok.argmax()])
        lo, w = lo + len(cand), 2 * w


def _redundant_flat(f: Flat, min_dist: float, max_cos: float) -> np.ndarray:
    n = len(f.xy)
    if n == 0:
        return np.zeros(0, dtype=bool)
    jump, stroke_last, step, step_len = _next_kept(f.xy, f.last, min_dist, max_cos)
    if (jump < 0).any():
        # Unresolved points are fixed points of ``root``: root[i] is the first of them on i's
        # chain (or n). Walk the chain from point 0 (it passes every stroke's first point)
        # resolving only those met; the others are never reached and never read below.
        pos = np.arange(n + 1)
        root = np.where(jump < 0, pos, jump)
        while True:
            nr = root[root]
            if (nr == root).all():
                break
            root = nr
        j = int(root[0])
        while j < n:
            jump[j] = _search(j, f.xy, step, step_len, stroke_last, min_dist, max_cos)
            j = int(root[jump[j]])
        jump[jump < 0] = n
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
    check_num_points(ink.num_points, ink.name())
    return _redundant_flat(Flat.of(ink), min_dist, max_cos)


def remove_redundant(ink: Ink, min_dist: float, max_cos: float = 0.99) -> Ink:
    """Drop points too close to the last kept one or nearly in line with their neighbours."""
    check_num_points(ink.num_points, ink.name())
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

    ``features``: ``"points"`` (one row of :func:`point_features` per kept point, the default)
    or ``"bezier"`` (one row per cubic Bézier curve, :mod:`inkpack.data.ink_bezier`, fitted to the
    normalised points with the maximum error ``bezier_error`` in normalised units; the
    redundant-point removal is not used then).
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
    features: str = "points"
    bezier_error: float = 0.1

    def __post_init__(self) -> None:
        if self.features not in FEATURE_KINDS:
            raise ConfigError(f"preprocessing.features: must be one of {', '.join(FEATURE_KINDS)}, "
                              f"not {self.features!r}")
        if not (isinstance(self.bezier_error, (int, float)) and self.bezier_error > 0):
            raise ConfigError(f"preprocessing.bezier_error: must be a number > 0, not {self.bezier_error!r}")

    @property
    def num_features(self) -> int:
        """The width of a feature row (6 for points, 10 for Bézier curves)."""
        return FEATURE_KINDS[self.features]


def bezier_flat(f: Flat, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Bézier-curve features of normalised points and, per row, the index of the curve's end point."""
    from inkpack.data.ink_bezier import bezier_curves

    return bezier_curves(f.xy, f.t, f.last, cfg.bezier_error, unit=1.0)


def bezier_rows(ink: Ink, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Eval-time Bézier features of ``ink`` (as ``preprocess(ink, cfg)``) and the index of the
    point each row ends at."""
    check_num_points(ink.num_points, ink.name())
    return bezier_flat(_norm_flat(Flat.of(ink), cfg.center, cfg.scale, 1.0), cfg)


def preprocess(ink: Ink, cfg: PreprocessConfig | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Ink to features ``float32 [T, F]`` (``F = cfg.num_features``); ``rng`` given = training
    (augment), None = eval.

    An ink of more than :func:`inkpack.data.ink.max_ink_points` points raises
    ``InputTooLargeError`` before any work; the work and memory are linear in the points."""
    check_num_points(ink.num_points, ink.name())
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
    if cfg.features == "bezier":
        return bezier_flat(f, cfg)[0]
    f = f.masked(_redundant_flat(f, cfg.min_dist, cfg.max_cos))
    return _features_flat(f)
