"""Preprocessing (seed 001) and rendering of ink, against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inkpack.data.ink import Ink
from inkpack.data.ink_preprocess import (
    PreprocessConfig,
    drop_points,
    jitter,
    normalize,
    point_features,
    preprocess,
    random_affine,
    redundant_mask,
    remove_redundant,
)
from inkpack.data.ink_render import render
from inkpack.errors import InkpackError


def kept_xy(ink: Ink) -> list[list[tuple[float, float]]]:
    return [[tuple(p) for p in s[:, :2].tolist()] for s in ink.strokes]


def reference_mask(strokes, min_dist, max_cos):
    """The sequential rule written as the obvious loop (independent of the vectorised code)."""
    keep = []
    for s in strokes:
        s = np.asarray(s, dtype=float)
        m = [True] + [False] * (len(s) - 1)
        j = 0
        for i in range(1, len(s)):
            if i == len(s) - 1:
                m[i] = True
                continue
            v, w = s[i] - s[j], s[i + 1] - s[i]
            d = np.hypot(*v)
            den = d * np.hypot(*w)
            cos = v @ w / den if den > 1e-9 else 1.0
            if d >= min_dist and cos <= max_cos:
                m[i] = True
                j = i
        keep += m
    return np.array(keep)


# ---- redundant points -------------------------------------------------------------------

def test_collinear_points_collapse_to_the_ends():
    ink = Ink.from_xy([[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]])
    assert kept_xy(remove_redundant(ink, min_dist=0.5)) == [[(0, 0), (4, 0)]]


def test_corner_is_kept():
    ink = Ink.from_xy([[(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]])
    assert kept_xy(remove_redundant(ink, 0.5, 0.99)) == [[(0, 0), (2, 0), (2, 2)]]


def test_distance_is_measured_from_the_last_kept_point():
    # with only the distance rule (max_cos=1), (1.2, 0) is 0.61 from its predecessor but
    # 1.2 from the last kept point (0, 0), so it stays
    ink = Ink.from_xy([[(0, 0), (0.3, 0.1), (0.6, -0.1), (1.2, 0), (1.2, 3)]])
    got = kept_xy(remove_redundant(ink, min_dist=1.0, max_cos=1.0))
    assert got == [[(0, 0), (1.2, 0), (1.2, 3)]]


def test_slow_arc_keeps_its_curvature():
    # a quarter circle in 1-degree steps: every triple is nearly straight (turn 1 deg),
    # but from the last kept point j the chord to i and the next step differ by
    # (i - j) / 2 + 0.5 degrees, which passes acos(0.99) = 8.11 degrees at i - j = 16
    a = np.deg2rad(np.arange(91))
    ink = Ink.from_xy([np.column_stack([np.cos(a), np.sin(a)])])
    keep = redundant_mask(ink, min_dist=0.0, max_cos=0.99)
    assert np.flatnonzero(keep).tolist() == [0, 16, 32, 48, 64, 80, 90]


def test_short_strokes_and_dots_are_untouched():
    ink = Ink.from_xy([[(0, 0)], [(5, 5), (5.001, 5)], [(1, 1)]])
    assert kept_xy(remove_redundant(ink, 1.0)) == kept_xy(ink)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
                         min_size=1, max_size=40), min_size=1, max_size=4),
       st.sampled_from([0.0, 1.0, 3.0, 7.5]), st.sampled_from([0.9, 0.99, 1.0]))
def test_vectorised_removal_equals_the_loop(strokes, min_dist, max_cos):
    ink = Ink.from_xy([np.array(s, dtype=float) for s in strokes])
    np.testing.assert_array_equal(redundant_mask(ink, min_dist, max_cos),
                                  reference_mask(strokes, min_dist, max_cos))


def test_long_straight_stroke_needs_wide_windows():
    x = np.linspace(0, 1, 500)
    ink = Ink.from_xy([np.column_stack([x, 0 * x]), np.column_stack([x, x])])
    out = remove_redundant(ink, 0.01, 0.99)
    assert kept_xy(out) == [[(0, 0), (1, 0)], [(0, 0), (1, 1)]]


# ---- normalisation ----------------------------------------------------------------------

def _random_ink(seed: int, n: int = 60) -> Ink:
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 1, (n, 2)) * [30, 10] + [500, 200]
    return Ink.from_xy(np.split(p, [10, 35]))


@pytest.mark.parametrize("scale", ["std", "y_std", "height", "max_side"])
def test_normalize_invariants(scale):
    ink = _random_ink(0)
    out = normalize(ink, "mean", scale, target=2.0)
    xy = out.xy()
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-9)
    stat = {"std": np.sqrt(xy.var(0).sum() / 2), "y_std": xy[:, 1].std(),
            "height": np.ptp(xy[:, 1]), "max_side": np.ptp(xy, 0).max()}[scale]
    assert stat == pytest.approx(2.0)
    # aspect ratio kept, and the result ignores where the ink was and how big it was
    w0, h0 = np.ptp(ink.xy(), 0)
    w1, h1 = np.ptp(xy, 0)
    assert w1 / h1 == pytest.approx(w0 / h0)
    moved = Ink([s * [3, 3, 1] + [7, -4, 0] for s in ink.strokes])
    np.testing.assert_allclose(normalize(moved, "mean", scale, 2.0).xy(), xy, atol=1e-9)
    assert [len(s) for s in out.strokes] == [10, 25, 25]
    np.testing.assert_array_equal(out.strokes[1][:, 2], ink.strokes[1][:, 2])


def test_normalize_bbox_centre_and_degenerate_cases():
    out = normalize(Ink.from_xy([[(0, 0), (4, 0), (10, 0)]]), "bbox", "y_std")
    assert kept_xy(out) == [[(-0.5, 0), (-0.1, 0), (0.5, 0)]]  # falls back to max_side
    assert kept_xy(normalize(Ink.from_xy([[(3, 4)]]))) == [[(0, 0)]]


# ---- features ---------------------------------------------------------------------------

def test_features_on_hand_computed_example():
    f = point_features(Ink.from_xy([[(0, 0), (1, 2)], [(4, 6)]]))
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, [[0, 0, 1, 2, 1, 0],
                                      [1, 2, 3, 4, 0, 1],
                                      [4, 6, 0, 0, 0, 1]])


# ---- augmentation -----------------------------------------------------------------------

def test_drop_rate_is_exact_and_keeps_stroke_starts():
    rng = np.random.default_rng(0)
    p = np.column_stack([np.arange(1000.0), np.zeros(1000)])
    ink = Ink.from_xy(np.split(p, np.arange(100, 1000, 100)))
    out = drop_points(ink, 0.3, rng)
    assert out.num_points == 700 and out.num_strokes == 10
    x = out.xy()[:, 0]
    assert np.all(np.diff(x) > 0)  # order kept
    assert [s[0, 0] for s in out.strokes] == list(np.arange(0.0, 1000, 100))
    again = drop_points(ink, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(again.xy(), out.xy())
    assert drop_points(ink, 0.0, rng).num_points == 1000
    assert drop_points(Ink.from_xy([[(0, 0)], [(1, 1)]]), 0.9, rng).num_points == 2


def test_affine_keeps_centroid_and_jitter_has_sigma():
    ink = _random_ink(1, 4000)
    rng = np.random.default_rng(1)
    out = random_affine(ink, rng)
    np.testing.assert_allclose(out.xy().mean(0), ink.xy().mean(0), atol=1e-9)
    assert not np.allclose(out.xy(), ink.xy())
    noisy = jitter(ink, rng, 0.5)
    assert np.std(noisy.xy() - ink.xy()) == pytest.approx(0.5, rel=0.05)


def test_preprocess_train_and_eval():
    ink = _random_ink(2, 300)
    ev = preprocess(ink)
    assert ev.dtype == np.float32 and ev.shape[1] == 6 and len(ev) <= 300
    np.testing.assert_array_equal(ev, preprocess(ink))
    a = preprocess(ink, rng=np.random.default_rng(5))
    b = preprocess(ink, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert len(a) <= 0.7 * 300 + 3  # 30% dropped before redundancy removal
    assert a[:, 5].sum() == 3  # one pen lift per stroke
    nodrop = preprocess(ink, PreprocessConfig(drop_rate=0.0), np.random.default_rng(5))
    assert len(nodrop) > len(a)


# ---- rendering --------------------------------------------------------------------------

def test_render_horizontal_line_and_dot():
    ink = Ink.from_xy([[(0, 0), (100, 0)], [(50, 40)]])
    img = render(ink, height=48, pen_width=3, margin=4)
    assert img.dtype == np.uint8 and img.shape[0] == 48
    # scale = (48 - 8 - 3) / 40; the line sits at row 4 + 1.5, the dot at row 42.5
    s = 37 / 40
    assert img.shape[1] == int(np.ceil(100 * s + 8 + 3)) + 1
    assert img[5, 10:90].max() < 128  # dark line
    assert img[42, int(5.5 + 50 * s)] < 128  # the dot
    assert img[20].min() == 255 and img[:, :2].min() == 255  # paper between and in margin


def test_render_scale_and_errors():
    img = render(Ink.from_xy([[(0, 0), (10, 10)]]), height=None, scale=2.0, pen_width=1,
                 margin=0)
    assert img.shape == (22, 22)  # ceil(10 * 2 + 1) + 1 and img[10, 10] < 128 and img[0, 20] == 255
    with pytest.raises(InkpackError):
        render(Ink.from_xy([[(0, 0), (10, 10)]]), height=4, margin=4)
    with pytest.raises(InkpackError):
        render(Ink([[[0.0, np.nan, 0.0]]]))
