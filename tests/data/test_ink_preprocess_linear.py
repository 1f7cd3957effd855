"""Linear-memory redundant-point removal: identical to the former quadratic implementation
(kept here as the reference), bounded memory on long degenerate strokes, and a points limit."""

import numpy as np
import pytest

from inkpack.data.ink import DEFAULT_MAX_POINTS, Ink, check_num_points
from inkpack.data.ink_preprocess import EPS, Flat, PreprocessConfig, preprocess, redundant_mask
from inkpack.errors import InputTooLargeError


def _reference_next_kept(xy, last, min_dist, max_cos):
    """The former ``_next_kept``: windows of 16, 64, 256, ... candidates for *all* pending
    points at once ((pending, window, 2) arrays: quadratic memory on long strokes)."""
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


def _reference_mask(ink, min_dist, max_cos):
    f = Flat.of(ink)
    n = len(f.xy)
    jump = _reference_next_kept(f.xy, f.last, min_dist, max_cos)
    reach = np.zeros(n + 1, dtype=bool)
    reach[:n] = f.first()
    while True:
        new = reach.copy()
        new[jump[np.flatnonzero(reach)]] = True
        jump = jump[jump]
        if (new == reach).all():
            break
        reach = new
    return reach[:n]


def _sequential_mask(ink, min_dist, max_cos):
    """The rule itself, walked point by point (an independent statement of it)."""
    keep = []
    for s in ink.strokes:
        xy = s[:, :2]
        k = np.zeros(len(xy), dtype=bool)
        k[0] = k[-1] = True
        j = 0
        for i in range(1, len(xy) - 1):
            v, nxt = xy[i] - xy[j], xy[i + 1] - xy[i]
            vl, nl = np.hypot(*v), np.hypot(*nxt)
            cos = float(v @ nxt) / max(vl * nl, EPS) if vl * nl > EPS else 1.0
            if vl >= min_dist and cos <= max_cos:
                k[i], j = True, i
        keep.append(k)
    return np.concatenate(keep)


def _random_ink(rng, n_points):
    """Strokes mixing wiggles, straight runs and clusters of repeated points."""
    strokes, left = [], n_points
    while left > 0:
        k = int(min(left, rng.integers(1, 180)))
        kind = rng.integers(3)
        if kind == 0:
            xy = np.cumsum(rng.normal(0, 0.05, (k, 2)), 0)
        elif kind == 1:  # straight, evenly spaced: every inner point is in line
            xy = np.outer(np.arange(k), rng.normal(0, 0.03, 2)) + rng.normal(0, 1, 2)
        else:  # a cluster: points within min_dist of each other, then a jump
            xy = rng.normal(0, 0.005, (k, 2)) + np.where(np.arange(k)[:, None] > k // 2, 0.5, 0.0)
        strokes.append(xy)
        left -= k
    return Ink.from_xy(strokes, id="random")


@pytest.mark.parametrize("seed", range(12))
def test_identical_to_the_former_implementation(seed):
    rng = np.random.default_rng(seed)
    ink = _random_ink(rng, int(rng.integers(150, 700)))
    for min_dist, max_cos in ((0.04, 0.99), (0.1, 0.9), (0.0, 1.0)):
        new = redundant_mask(ink, min_dist, max_cos)
        assert np.array_equal(new, _reference_mask(ink, min_dist, max_cos))
    assert np.array_equal(redundant_mask(ink, 0.04, 0.99), _sequential_mask(ink, 0.04, 0.99))


def test_long_degenerate_strokes_give_the_same_answer_in_small_memory():
    # 3,000 points in one straight stroke and 3,000 on one spot: only the ends are kept.
    line = Ink.from_xy([np.column_stack([np.arange(3000) * 0.01, np.zeros(3000)])])
    spot = Ink.from_xy([np.zeros((3000, 2))])
    for ink in (line, spot):
        mask = redundant_mask(ink, 0.04, 0.99)
        assert mask.sum() == 2 and mask[0] and mask[-1]
        assert np.array_equal(mask, _reference_mask(ink, 0.04, 0.99))


def test_points_limit_refuses_before_work(monkeypatch):
    ink = Ink.from_xy([np.zeros((50, 2))], id="sample-7")
    monkeypatch.setenv("INKPACK_MAX_INK_POINTS", "40")
    with pytest.raises(InputTooLargeError, match=r"^sample-7: ink too large: 50 points .* limit of 40"):
        preprocess(ink, PreprocessConfig())
    with pytest.raises(InputTooLargeError, match="sample-7"):
        redundant_mask(ink, 0.04)
    with pytest.raises(InputTooLargeError, match="sample-7"):
        ink.check()
    monkeypatch.setenv("INKPACK_MAX_INK_POINTS", "50")
    assert preprocess(ink, PreprocessConfig()).shape == (2, 6)  # one spot: first and last point
    monkeypatch.delenv("INKPACK_MAX_INK_POINTS")
    check_num_points(DEFAULT_MAX_POINTS)
    with pytest.raises(InputTooLargeError):
        check_num_points(DEFAULT_MAX_POINTS + 1)
