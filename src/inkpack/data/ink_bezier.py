"""Cubic Bézier curves as the input of the online line models (after Carbune et al. 2020).

Carbune et al., "Fast multi-language LSTM-based online handwriting recognition" (IJDAR 23,
2020, section 2.1) fit every stroke with a sequence of cubic Bézier curves, the strokes being
split until the fit error is under a threshold, and feed the recognizer one 10-dimensional
vector per curve instead of one per point: the vector between the curve's end points, the
distances of the control points from the end points relative to the end-point distance, the
two control-point angles, three time coefficients, and a pen-up bit. Only the paper's
abstract could be read from the stored sources here, so the exact definitions below are ours,
built on that summary; they are what the models of this package are trained and run with.

**Fit.** A curve ``B(s) = (1-s)^3 P0 + 3(1-s)^2 s P1 + 3(1-s) s^2 P2 + s^3 P3`` fitted to the
points ``q_0..q_m`` of a piece of a stroke has ``P0 = q_0`` and ``P3 = q_m`` (consecutive curves
join); ``P1, P2`` minimise ``sum_i |B(s_i) - q_i|^2 + lam (|P1 - L1|^2 + |P2 - L2|^2)`` with
``L1, L2`` the points at 1/3 and 2/3 of the chord and ``lam = 1e-6`` (a pin that only decides
under-determined pieces: two points give the straight line), at ``s_i`` = the normalised
cumulative chord length (the point index where the piece has no length). The fit error of a
piece is ``max_i |B(s_i) - q_i|``. Splitting: every stroke starts as one piece; a piece whose
error exceeds ``max_error * unit`` (``unit`` = the ink's size, see :func:`bezier_curves`), or
whose ``d1``/``d2`` (below) exceed ``MAX_D`` (a loop closing on itself: the chord is no measure
of it), is split in two at its worst point, clamped to the middle half of the piece so that the
depth of the splitting is logarithmic; pieces of fewer than four points are not split. All
pieces of a round are fitted together with vectorised numpy (segment sums), so time and memory
are ``O(N log N)`` / ``O(N)`` in the points. Refinement: the final pieces are then refitted with
``refine`` rounds (default ``NEWTON``) of two Newton steps of every ``s_i`` on
``(B(s_i) - q_i) . B'(s_i) = 0`` (Schneider, Graphics Gems 1990) and a Gauss-Newton step of
``P1, P2`` on the points' distances from the tangent lines at their feet (``s_i`` eliminated to
first order; quadratic convergence), kept only where it lowers the piece's error. Points sampled
from one cubic Bézier (evenly in its parameter, or as ``u^1.3``) are fitted to about 2e-5 of its
size after the default 2 rounds, 1e-9 after 3 (the chord-length fit alone: 6e-3); on IAM-OnDB
the refinement is about a third of the extraction time.

**Features** of a curve with control points ``P0..P3``, chord ``v = P3 - P0``,
``c = max(|v|, CHORD_FLOOR * unit)`` and time control values ``T0..T3``:

* ``dx, dy = v`` (in the unit of the ink: ``y_std`` units after line normalisation);
* ``d1 = |P1 - P0| / c``, ``d2 = |P2 - P3| / c`` (a straight segment: ``1/3, 1/3``);
* ``a1`` = signed angle from ``v`` to ``P1 - P0``, ``a2`` = signed angle from ``v`` to ``P3 - P2``
  (radians in ``(-pi, pi]``, ``atan2(cross, dot)``; 0 where a vector is zero): the start and end
  tangents relative to the chord, both 0 for a straight segment;
* ``t1, t2, t3 = T1 - T0, T2 - T0, T3 - T0`` in seconds, where the time ``t(s)`` of the points
  is fitted with the same cubic Bernstein basis at the same ``s_i`` (``T0``, ``T3`` = the first and
  last point's time): uniform speed gives ``(dt/3, 2dt/3, dt)``;
* ``pen_up``: 0 for a curve of a stroke, 1 for the straight jump between two strokes (from the
  last point of one to the first of the next: ``d = 1/3`` unless ``|v| < c``, ``a = 0``, linear time).

A single-point stroke (a dot) is one curve of zeros (its position is in the pen-up curve before
it). Every feature is finite for any finite ink: ``d1``/``d2`` are clipped at ``CLIP_D`` (they
are at most ``MAX_D`` on the chord-length fit of every piece long enough to split) and the time
coefficients at ``+-CLIP_T`` seconds.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("dx", "dy", "d1", "d2", "a1", "a2", "t1", "t2", "t3", "pen_up")
NUM_FEATURES = len(FEATURES)
NEWTON = 2  # refinement rounds of the final fits (default)
LAM = 1e-6  # pin of P1/P2 to the chord's thirds (decides only under-determined pieces)
MAX_D = 2.0  # a control point further than this (relative to the chord) splits the piece
CLIP_D = 10.0  # bound of d1/d2 for pieces too short to split
CLIP_T = 10.0  # bound of the time coefficients (seconds): a long pause is a pause
CHORD_FLOOR = 0.01  # smallest chord (times unit) the control distances are measured against
MIN_SPLIT = 4  # pieces of fewer points are not split


def _bern(s: np.ndarray) -> np.ndarray:
    u = 1.0 - s
    us = u * s
    return np.column_stack([u * u * u, 3 * us * u, 3 * us * s, s * s * s])


def _fit(q: np.ndarray, b: np.ndarray, seg, starts, ends) -> np.ndarray:
    """Least-squares control values ``[S, 4]`` of every piece (rows ``seg`` of ``q [M]``, real or
    complex = 2-D points, Bernstein weights ``b [M, 4]``; pieces begin at rows ``starts`` and end
    at rows ``ends``): ``P0``/``P3`` the end values, ``P1``/``P2`` pinned by ``LAM`` to the thirds."""
    p0, p3 = q[starts], q[ends]
    r = q - b[:, 0] * p0[seg] - b[:, 3] * p3[seg]
    sums = np.add.reduceat(np.column_stack([b[:, 1] * b[:, 1], b[:, 1] * b[:, 2], b[:, 2] * b[:, 2],
                                            b[:, 1] * r, b[:, 2] * r]), starts)
    a11, a12, a22 = sums[:, 0].real + LAM, sums[:, 1].real, sums[:, 2].real + LAM
    r1 = sums[:, 3] + LAM * (p0 + (p3 - p0) / 3)
    r2 = sums[:, 4] + LAM * (p0 + 2 * (p3 - p0) / 3)
    det = a11 * a22 - a12 * a12  # >= LAM^2 > 0: positive definite
    return np.column_stack([p0, (a22 * r1 - a12 * r2) / det, (a11 * r2 - a12 * r1) / det, p3])


def _curve(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``B(s)`` per row: control values ``c [M, 4]`` (of each row's piece), weights ``b [M, 4]``."""
    return (c * b).sum(1)


def _reparam(c, s, q, starts, ends):
    """One Newton step of every ``s_i`` towards the foot of ``q_i`` on its curve (ends fixed);
    ``c [M, 4]`` complex control points of each row's piece."""
    u = 1.0 - s
    d = 3 * (c[:, 1:] - c[:, :-1])
    t1 = d[:, 0] * (u * u) + d[:, 1] * (2 * u * s) + d[:, 2] * (s * s)
    t2 = 2 * ((d[:, 1] - d[:, 0]) * u + (d[:, 2] - d[:, 1]) * s)
    diff = _curve(c, _bern(s)) - q
    num = (diff * t1.conj()).real
    den = (t1 * t1.conj()).real + (diff * t2.conj()).real
    good = den > 1e-12
    s = np.clip(s - np.where(good, num / np.where(good, den, 1.0), 0.0), 0.0, 1.0)
    s[starts], s[ends] = 0.0, 1.0
    return s, t1


_IU, _JU = np.triu_indices(4)  # the 10 distinct products of a symmetric 4 x 4 matrix
_SYM = np.zeros((4, 4), dtype=np.int64)
_SYM[_IU, _JU] = _SYM[_JU, _IU] = np.arange(10)


def _tangent_step(ctrl, q, b, tan, seg, starts):
    """A Gauss-Newton step of ``P1, P2`` on the distances of the points from the curve's tangent
    lines at their feet (the ``s_i`` eliminated to first order), damped by ``LAM``."""
    r = _curve(ctrl[seg], b) - q
    tl = np.abs(tan)
    n = 1j * np.where(tl > 1e-12, tan / np.where(tl > 1e-12, tl, 1.0), 0.0)  # unit normals
    e = (r * n.conj()).real  # signed distances from the tangent lines
    jac = np.column_stack([b[:, 1] * n.real, b[:, 1] * n.imag, b[:, 2] * n.real, b[:, 2] * n.imag])
    sums = np.add.reduceat(np.concatenate([jac[:, _IU] * jac[:, _JU], jac * e[:, None]], 1), starts)
    a = sums[:, _SYM] + LAM * np.eye(4)[None]
    delta = np.linalg.solve(a, -sums[:, 10:, None])[:, :, 0]
    out = ctrl.copy()
    out[:, 1] += delta[:, 0] + 1j * delta[:, 1]
    out[:, 2] += delta[:, 2] + 1j * delta[:, 3]
    return out


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The point indices of pieces ``[lo, hi]`` concatenated, the piece of each, the row starts."""
    k = hi - lo + 1
    starts = np.zeros(len(k), dtype=np.int64)
    np.cumsum(k[:-1], out=starts[1:])
    seg = np.repeat(np.arange(len(lo)), k)
    idx = np.arange(int(k.sum())) - starts[seg] + lo[seg]
    return idx, seg, starts


def _control_ratios(ctrl: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chord ``v`` and ``d1, d2`` of complex control points ``[S, 4]``."""
    v = ctrl[:, 3] - ctrl[:, 0]
    c = np.maximum(np.abs(v), floor)
    return v, np.abs(ctrl[:, 1] - ctrl[:, 0]) / c, np.abs(ctrl[:, 3] - ctrl[:, 2]) / c


def _fit_pieces(z, t, lo, hi, final: bool = False, newton: int = NEWTON):
    """Fit pieces ``[lo, hi]`` (``hi > lo``) of the complex points ``z`` at the chord-length
    parameters (``final``: then ``newton`` refinements, and the times): control points ``[S, 4]``
    (complex), time control values ``[S, 4]`` (``final`` only), max error ``[S]``, index of the worst point ``[S]``."""
    idx, seg, starts = _ranges(lo, hi)
    ends = np.append(starts[1:], len(idx)) - 1
    q = z[idx]
    step = np.abs(np.diff(q, prepend=q[0]))
    step[starts] = 0.0
    cum = np.cumsum(step)
    cum -= cum[starts][seg]
    total = cum[ends][seg]
    local = np.arange(len(idx)) - starts[seg]
    s0 = np.where(total > 0, cum / np.where(total > 0, total, 1.0), local / (hi - lo)[seg])
    b = b0 = _bern(s0)
    ctrl = ctrl0 = _fit(q, b0, seg, starts, ends)
    err = err0 = np.abs(_curve(ctrl0[seg], b0) - q)
    emax = np.maximum.reduceat(err0, starts)
    if final and newton:
        s = s0
        for _ in range(newton):
            s, tan = _reparam(ctrl[seg], s, q, starts, ends)
            s, tan = _reparam(ctrl[seg], s, q, starts, ends)
            ctrl = _tangent_step(ctrl, q, _bern(s), tan, seg, starts)
        s = _reparam(ctrl[seg], s, q, starts, ends)[0]
        b = _bern(s)
        err = np.abs(_curve(ctrl[seg], b) - q)
        emax, emax0 = np.maximum.reduceat(err, starts), emax
        worse = ~(emax <= emax0)  # a refinement that diverged (or went non-finite): keep the first fit
        if worse.any():
            ctrl[worse], emax[worse] = ctrl0[worse], emax0[worse]
            w = worse[seg]
            b, err = np.where(w[:, None], b0, b), np.where(w, err0, err)
    worst = np.minimum.reduceat(np.where(err >= emax[seg], local, len(idx)), starts)
    tc = _fit(t[idx], b, seg, starts, ends).real if final else None
    return ctrl, tc, emax, lo + worst


def fit_stroke_curves(xy: np.ndarray, t: np.ndarray, last: np.ndarray, max_error: float,
                      unit: float = 1.0, refine: int = NEWTON) -> dict:
    """Cubic Bézier curves of every stroke of the flat points ``xy [N, 2]``, ``t [N]`` (seconds),
    ``last [N]`` (stroke ends), in writing order; ``refine`` rounds of refinement of the final fits.

    Returns ``ctrl [C, 4]`` (complex: ``x + iy``), ``tctrl [C, 4]``, ``error [C]`` (max distance of
    the piece's points from its curve), ``lo``/``hi [C]`` (first and last point of each piece)."""
    z = xy[:, 0] + 1j * xy[:, 1]
    firsts = np.flatnonzero(np.r_[True, last[:-1]]) if len(z) else np.zeros(0, dtype=np.int64)
    lasts = np.flatnonzero(last)
    thr, floor = max_error * unit, CHORD_FLOOR * unit
    dot = firsts[lasts == firsts]
    out = {"ctrl": [np.repeat(z[dot][:, None], 4, 1)], "tctrl": [np.repeat(t[dot][:, None], 4, 1)],
           "error": [np.zeros(len(dot))], "lo": [dot], "hi": [dot]}
    lo, hi = firsts[lasts > firsts], lasts[lasts > firsts]
    final = ([lo[:0]], [hi[:0]])
    while len(lo):  # split on the chord-length fits (cheap), refine the final pieces once
        ctrl, _, err, worst = _fit_pieces(z, t, lo, hi)
        _, r1, r2 = _control_ratios(ctrl, floor)
        split = ((err > thr) | (np.maximum(r1, r2) > MAX_D)) & (hi - lo + 1 >= MIN_SPLIT)
        final[0].append(lo[~split])
        final[1].append(hi[~split])
        q = np.maximum(1, (hi - lo) // 4)
        m = np.clip(worst, lo + q, hi - q)[split]
        lo, hi = np.concatenate([lo[split], m]), np.concatenate([m, hi[split]])
    lo, hi = np.concatenate(final[0]), np.concatenate(final[1])
    if len(lo):
        ctrl, tc, err, _ = _fit_pieces(z, t, lo, hi, final=True, newton=refine)
        for k, v in (("ctrl", ctrl), ("tctrl", tc), ("error", err), ("lo", lo), ("hi", hi)):
            out[k].append(v)
    res = {k: np.concatenate(v) for k, v in out.items()}
    order = np.argsort(res["lo"], kind="stable")  # writing order: pieces of a stroke do not overlap
    return {k: v[order] for k, v in res.items()}


def _angle(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Signed angle from ``v`` to ``w`` (complex), 0 where either is zero."""
    return np.angle(w * v.conj())


def curve_features(ctrl: np.ndarray, tctrl: np.ndarray, pen_up: np.ndarray, unit: float = 1.0) -> np.ndarray:
    """``float32 [C, 10]`` features (:data:`FEATURES`) of curves ``ctrl [C, 4]`` (complex control
    points), ``tctrl [C, 4]`` (seconds)."""
    out = np.zeros((len(ctrl), NUM_FEATURES), dtype=np.float32)
    if not len(ctrl):
        return out
    v, d1, d2 = _control_ratios(ctrl, CHORD_FLOOR * unit)
    out[:, 0], out[:, 1] = v.real, v.imag
    out[:, 2] = np.minimum(d1, CLIP_D)
    out[:, 3] = np.minimum(d2, CLIP_D)
    out[:, 4] = _angle(v, ctrl[:, 1] - ctrl[:, 0])
    out[:, 5] = _angle(v, ctrl[:, 3] - ctrl[:, 2])
    out[:, 6:9] = np.clip(tctrl[:, 1:] - tctrl[:, :1], -CLIP_T, CLIP_T)
    out[:, 9] = pen_up
    return out


def bezier_curves(xy: np.ndarray, t_ms: np.ndarray, last: np.ndarray, max_error: float = 0.1,
                  unit: float | None = None, refine: int = NEWTON) -> tuple[np.ndarray, np.ndarray]:
    """Features ``float32 [C, 10]`` of the flat ink (pen-down curves and the pen-up jumps between
    strokes, in writing order) and, per row, the index of the point where the curve ends.

    ``unit``: the length the threshold ``max_error`` and the chord floor are relative to; None =
    the standard deviation of y (the line normalisation's statistic), else the larger side of the
    bounding box, else 1. ``refine``: rounds of refinement of the final fits (see the module)."""
    xy = np.asarray(xy, dtype=np.float64)
    last = np.asarray(last, dtype=bool)
    if len(xy) == 0:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32), np.zeros(0, dtype=np.int64)
    if unit is None:
        unit = float(xy[:, 1].std())
        unit = unit if unit > 1e-9 else float((xy.max(0) - xy.min(0)).max())
        unit = unit if unit > 1e-9 else 1.0
    last = last.copy()
    last[-1] = True  # the last point ends its stroke
    t = np.asarray(t_ms, dtype=np.float64) / 1000.0
    fit = fit_stroke_curves(xy, t, last, max_error, unit, refine)
    # pen-up jumps: from each stroke's last point to the next stroke's first, straight, linear time
    a = np.flatnonzero(last)[:-1]
    thirds = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    z = xy[:, 0] + 1j * xy[:, 1]
    jump = z[a, None] + (z[a + 1] - z[a])[:, None] * thirds
    tjump = t[a, None] + (t[a + 1] - t[a])[:, None] * thirds
    ctrl = np.concatenate([fit["ctrl"], jump])
    tctrl = np.concatenate([fit["tctrl"], tjump])
    pen_up = np.r_[np.zeros(len(fit["lo"])), np.ones(len(a))]
    end = np.r_[fit["hi"], a + 1]
    order = np.argsort(np.r_[2 * fit["lo"], 2 * a + 1], kind="stable")  # a jump after its stroke
    return curve_features(ctrl[order], tctrl[order], pen_up[order], unit), end[order]


def bezier_features(ink, max_error: float = 0.1, unit: float | None = None, refine: int = NEWTON) -> np.ndarray:
    """``float32 [C, 10]``: the Bézier-curve features of ``ink`` (an :class:`inkpack.data.ink.Ink`),
    see the module docstring; ``max_error`` relative to ``unit`` (:func:`bezier_curves`)."""
    from inkpack.data.ink import check_num_points

    check_num_points(ink.num_points, ink.name())
    pts, t = ink.to_points()
    return bezier_curves(pts[:, :2], t, pts[:, 2] != 0, max_error, unit, refine)[0]
