"""Bézier-curve features of ink (inkpack.data.ink_bezier): exact fits, splits, pen-up curves,
degenerate strokes, and the preprocessing option that selects them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inkpack.data.ink import Ink
from inkpack.data.ink_bezier import FEATURES, bezier_curves, bezier_features, fit_stroke_curves
from inkpack.data.ink_preprocess import PreprocessConfig, preprocess
from inkpack.errors import ConfigError

CTRL = np.array([[0.0, 0.0], [1.0, 2.0], [4.0, 2.5], [5.0, 1.0]])  # an asymmetric cubic


def bezier_points(ctrl: np.ndarray, u: np.ndarray) -> np.ndarray:
    b = np.stack([(1 - u) ** 3, 3 * (1 - u) ** 2 * u, 3 * (1 - u) * u**2, u**3], -1)
    return b @ ctrl


def col(name: str) -> int:
    return FEATURES.index(name)


def test_an_exact_cubic_is_one_curve_with_the_hand_computed_features():
    u = np.linspace(0, 1, 40) ** 1.3  # not the chord-length parameters: the fit must find them
    xy = bezier_points(CTRL, u)
    t_ms = 200.0 + 600.0 * u  # time linear in the curve parameter
    last = np.zeros(len(u), bool)
    last[-1] = True
    fit = fit_stroke_curves(xy, t_ms / 1000, last, max_error=0.05, refine=4)
    assert len(fit["lo"]) == 1 and fit["error"][0] < 1e-6
    # the default refinement (2 rounds) is close; without it the chord-length fit is not
    assert fit_stroke_curves(xy, t_ms / 1000, last, max_error=0.05)["error"][0] < 2e-4
    assert fit_stroke_curves(xy, t_ms / 1000, last, max_error=0.05, refine=0)["error"][0] > 0.01
    f, end = bezier_curves(xy, t_ms, last, max_error=0.05, unit=1.0, refine=4)
    assert f.shape == (1, 10) and end.tolist() == [39]
    # by hand: chord v = (5, 1); |v| = sqrt(26); P1 - P0 = (1, 2); P3 - P2 = (1, -1.5)
    chord = math.sqrt(26)
    want = {
        "dx": 5.0, "dy": 1.0,
        "d1": math.hypot(1, 2) / chord, "d2": math.hypot(1, -1.5) / chord,
        "a1": math.atan2(2, 1) - math.atan2(1, 5),
        "a2": math.atan2(-1.5, 1) - math.atan2(1, 5),
        "t1": 0.2, "t2": 0.4, "t3": 0.6,  # seconds: T_k - T0 = 600 ms * k / 3
        "pen_up": 0.0,
    }
    for name, value in want.items():
        assert f[0, col(name)] == pytest.approx(value, abs=1e-5), name


def test_a_straight_line_has_control_points_on_the_chord_at_thirds():
    xy = np.column_stack([np.linspace(1, 7, 25), np.linspace(2, 5, 25)])
    last = np.zeros(25, bool)
    last[-1] = True
    f, _ = bezier_curves(xy, np.arange(25) * 10.0, last, max_error=0.01, unit=1.0)
    assert len(f) == 1
    assert f[0, col("d1")] == pytest.approx(f[0, col("d2")], abs=1e-6)
    assert f[0, col("d1")] == pytest.approx(1 / 3, abs=1e-6)
    assert f[0, col("a1")] == pytest.approx(0, abs=1e-6) and f[0, col("a2")] == pytest.approx(0, abs=1e-6)
    assert f[0, col("dx")] == pytest.approx(6) and f[0, col("dy")] == pytest.approx(3)


def test_a_wiggly_stroke_splits_and_every_curve_meets_the_threshold():
    x = np.linspace(0, 30, 1500)
    xy = np.column_stack([x, np.sin(2 * x) + 0.3 * np.sin(7 * x)])
    last = np.zeros(len(x), bool)
    last[-1] = True
    fit = fit_stroke_curves(xy, np.arange(len(x)) * 0.01, last, max_error=0.02)
    n = len(fit["lo"])
    assert n >= 20  # about 19 turning points of sin(2x) alone over 0..30
    assert (fit["error"] <= 0.02).all()
    # the pieces tile the stroke: each starts where the previous ended
    assert fit["lo"][0] == 0 and fit["hi"][-1] == len(x) - 1
    assert (fit["lo"][1:] == fit["hi"][:-1]).all()
    # the curves really pass within the threshold of every point (checked independently)
    for c, lo, hi in zip(fit["ctrl"], fit["lo"], fit["hi"]):
        ctrl = np.column_stack([c.real, c.imag])
        dense = bezier_points(ctrl, np.linspace(0, 1, 2000))
        pts = xy[lo : hi + 1]
        dist = np.sqrt(((pts[:, None] - dense[None]) ** 2).sum(-1)).min(1)
        assert dist.max() <= 0.02 + 1e-3


def test_evenly_spaced_samples_of_a_cubic_give_back_its_control_points():
    xy = bezier_points(CTRL, np.linspace(0, 1, 30))
    last = np.zeros(30, bool)
    last[-1] = True
    for refine, tol in ((2, 1e-3), (3, 1e-6)):
        fit = fit_stroke_curves(xy, np.zeros(30), last, max_error=0.05, refine=refine)
        assert len(fit["lo"]) == 1 and fit["error"][0] < tol
        got = np.column_stack([fit["ctrl"][0].real, fit["ctrl"][0].imag])
        assert np.allclose(got, CTRL, atol=10 * tol)


def test_a_tighter_threshold_gives_more_curves():
    x = np.linspace(0, 12, 600)
    ink = Ink.from_xy([np.column_stack([x * 10, 10 * np.sin(x)])])
    counts = [len(bezier_features(ink, max_error=e, unit=10.0)) for e in (0.2, 0.05, 0.01)]
    assert counts[0] < counts[1] < counts[2]


def test_pen_up_curves_join_the_strokes():
    s1 = np.column_stack([np.linspace(0, 4, 9), np.zeros(9)])
    s2 = np.column_stack([np.full(7, 6.0), np.linspace(1, 4, 7)])
    ink = Ink.from_xy([s1, [[10.0, 10.0]], s2])  # a dot between two strokes
    f = bezier_features(ink, max_error=0.05, unit=1.0)
    assert f[:, col("pen_up")].tolist() == [0, 1, 0, 1, 0]
    # the jumps: from (4, 0) to the dot (10, 10), and from the dot to (6, 1)
    assert f[1, col("dx")] == pytest.approx(6) and f[1, col("dy")] == pytest.approx(10)
    assert f[3, col("dx")] == pytest.approx(-4) and f[3, col("dy")] == pytest.approx(-9)
    assert f[1, col("d1")] == pytest.approx(1 / 3) and f[1, col("a1")] == 0
    # the dot is one curve of zeros; the pen-up time is the pause, in seconds (nominal 10 ms clock)
    assert np.all(f[2, :9] == 0)
    assert f[1, col("t3")] == pytest.approx(0.01)
    # summed offsets go from the first point to the last
    assert f[:, :2].sum(0) == pytest.approx([6.0, 4.0])


@pytest.mark.parametrize("strokes", [
    [[[3.0, 3.0]]],  # one point
    [[[1.0, 1.0]] * 30],  # one point repeated
    [[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 0.0]]],  # a closed stroke: zero chord
    [[[0.0, 0.0], [0.0, 0.0], [1e-12, 0.0], [0.0, 1e-12], [0.0, 0.0]]],  # sub-floor wiggles
    [np.column_stack([np.cos(np.linspace(0, 6.2, 80)), np.sin(np.linspace(0, 6.2, 80))])],  # a loop
    [[[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]],  # jumps of length zero
])
def test_degenerate_ink_gives_finite_features(strokes):
    ink = Ink.from_xy([np.asarray(s, float) for s in strokes])
    for unit in (None, 1.0):
        f = bezier_features(ink, max_error=0.05, unit=unit)
        assert f.dtype == np.float32 and f.shape[1] == 10 and len(f) >= 1
        assert np.isfinite(f).all()
        assert (f[:, col("d1")] <= 10).all() and (f[:, col("d2")] <= 10).all()
    cfg = PreprocessConfig(scale="y_std", features="bezier")
    assert np.isfinite(preprocess(ink, cfg)).all()
    assert np.isfinite(preprocess(ink, cfg, np.random.default_rng(0))).all()


def test_a_loop_is_split_rather_than_measured_against_a_zero_chord():
    a = np.linspace(0, 2 * np.pi, 200)
    xy = np.column_stack([np.cos(a), np.sin(a)])
    last = np.zeros(200, bool)
    last[-1] = True
    f, _ = bezier_curves(xy, np.arange(200) * 10.0, last, max_error=0.5, unit=1.0)
    assert len(f) >= 2 and (f[:, col("d1")] <= 2).all() and (f[:, col("d2")] <= 2).all()


def test_the_fit_is_linear_in_the_points_within_bounds():
    """A 100,000-point stroke: bounded work (depth of the splitting is logarithmic)."""
    import time

    n = 100_000
    x = np.linspace(0, 2000, n)
    ink = Ink.from_xy([np.column_stack([x, np.sin(x)])])
    t0 = time.perf_counter()
    f = bezier_features(ink, max_error=0.05, unit=1.0)
    assert np.isfinite(f).all() and 600 < len(f) < n / 4
    assert time.perf_counter() - t0 < 60


def test_preprocessing_selects_the_features():
    ink = Ink.from_xy([np.column_stack([np.linspace(0, 50, 60), 5 * np.sin(np.linspace(0, 6, 60))]),
                       [[60.0, 0.0], [62.0, 8.0]]])
    pts = preprocess(ink, PreprocessConfig(scale="y_std"))
    bez = preprocess(ink, PreprocessConfig(scale="y_std", features="bezier"))
    assert pts.shape[1] == 6 and bez.shape[1] == 10 and len(bez) < len(pts)
    assert PreprocessConfig().num_features == 6 and PreprocessConfig(features="bezier").num_features == 10
    # the points pipeline is the default and does not change
    assert np.array_equal(pts, preprocess(ink, PreprocessConfig(scale="y_std", features="points")))


@pytest.mark.parametrize("bad", [{"features": "splines"}, {"features": 3}, {"bezier_error": 0},
                                 {"bezier_error": "0.1"}])
def test_a_bad_option_is_one_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError) as e:
        PreprocessConfig(**bad)
    msg = str(e.value)
    assert "\n" not in msg and f"preprocessing.{next(iter(bad))}" in msg
