"""Stroke-order / direction perturbations and the writer-style split of the synthesizer (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest

from inkpack.data.hanzi_synth import (
    HELD_OUT,
    STYLE_RANGES,
    HanziSynthDataset,
    SynthConfig,
    draw_style,
    synth,
)
from inkpack.data.ink import Ink
from inkpack.data.ink_perturb import (
    PerturbConfig,
    join_strokes,
    perturb_order,
    permute_strokes,
    reverse_strokes,
    swap_strokes,
)
from inkpack.data.ink_preprocess import preprocess
from inkpack.errors import ConfigError


def four_strokes() -> Ink:
    """Four horizontal strokes at y = 0, 10, 20, 30, 3 points each, 50 ms pen-up gaps."""
    strokes, t = [], 0.0
    for k in range(4):
        x = np.array([0.0, 5.0, 10.0]) + k
        strokes.append(np.column_stack([x, np.full(3, 10.0 * k), t + np.array([0.0, 10.0, 20.0])]))
        t += 20.0 + 50.0
    return Ink(strokes, label="x")


def ys(ink: Ink) -> list[float]:
    return [float(s[0, 1]) for s in ink.strokes]


def times_ok(ink: Ink) -> bool:
    t = np.concatenate([s[:, 2] for s in ink.strokes])
    return bool(np.all(np.diff(t) >= 0))


def test_swap_at_rate_one_swaps_every_neighbouring_pair_once():
    ink = four_strokes()
    out = swap_strokes(ink, 1.0, np.random.default_rng(0))
    assert ys(out) == [10.0, 0.0, 30.0, 20.0]  # pairs (0, 1) and (2, 3), not overlapping
    assert sorted(map(len, out.strokes)) == [3] * 4 and times_ok(out)
    # the moved strokes keep their durations, the gaps keep their slots
    assert [s[-1, 2] - s[0, 2] for s in out.strokes] == [20.0] * 4
    assert out.strokes[1][0, 2] - out.strokes[0][-1, 2] == 50.0
    assert ys(swap_strokes(ink, 0.0, np.random.default_rng(0))) == ys(ink)


def test_reverse_draws_the_stroke_backwards_with_the_same_timing():
    ink = four_strokes()
    out = reverse_strokes(ink, 1.0, np.random.default_rng(0))
    for a, b in zip(ink.strokes, out.strokes):
        np.testing.assert_array_equal(b[:, 0], a[::-1, 0])
        np.testing.assert_array_equal(b[:, 2], a[:, 2])  # equal steps: the same clock
    assert times_ok(out) and ys(out) == ys(ink)


def test_join_connects_consecutive_strokes_without_a_pen_lift():
    ink = four_strokes()
    out = join_strokes(ink, 1.0, np.random.default_rng(0))
    assert out.num_strokes == 1 and times_ok(out)
    # every original point is still there, in order, plus connector points between
    pts = out.strokes[0][:, :2]
    idx = [int(np.flatnonzero((pts == p).all(1))[0]) for p in ink.xy()]
    assert idx == sorted(idx) and len(pts) > ink.num_points
    steps = np.hypot(*np.diff(pts, axis=0).T)
    assert steps.max() <= 10.0  # connectors at about the strokes' spacing (5), no jump


def test_permute_and_rates_draw_from_the_generator():
    ink = four_strokes()
    orders = {tuple(ys(permute_strokes(ink, np.random.default_rng(s)))) for s in range(20)}
    assert len(orders) > 5 and all(sorted(o) == ys(ink) for o in orders)
    a = perturb_order(ink, np.random.default_rng(3), PerturbConfig(swap=0.5, reverse=0.5, join=0.5))
    b = perturb_order(ink, np.random.default_rng(3), PerturbConfig(swap=0.5, reverse=0.5, join=0.5))
    assert all(np.array_equal(x, y) for x, y in zip(a.strokes, b.strokes))


def test_perturbed_real_characters_give_finite_features():
    toy = [np.array([[100.0, 200], [500, 210], [800, 200]]), np.array([[450.0, 100], [460, 500], [450, 850]]),
           np.array([[200.0, 600], [300, 700]]), np.array([[600.0, 600], [700, 700]])]
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ink = perturb_order(synth(toy, rng), rng, PerturbConfig(swap=0.5, reverse=0.5, join=0.3, permute=seed % 2 == 1))
        f = preprocess(ink)
        assert len(f) > 0 and np.isfinite(f).all() and times_ok(ink)


def test_perturbation_config_is_checked():
    assert PerturbConfig.from_dict({"swap": 0.2}).swap == 0.2
    with pytest.raises(ConfigError, match="order_augment: unknown keys"):
        PerturbConfig.from_dict({"shuffle": 1}, "order_augment")
    with pytest.raises(ConfigError, match="join must be a rate"):
        PerturbConfig.from_dict({"join": 1.5})


def test_held_out_writers_have_no_style_in_the_training_ranges():
    h = HELD_OUT / 2
    for split in ("train", "heldout"):
        for s in range(200):
            st = draw_style(np.random.default_rng(s), split)
            for name in ("slant", "rotate_deg", "aspect", "join_prob", "warp_amp"):
                lo, hi = STYLE_RANGES[name]
                u = (getattr(st, name) - lo) / (hi - lo)
                inner = h <= u <= 1 - h
                assert inner == (split == "train"), (split, name, u)
            if split == "heldout":
                assert st.swap == st.reverse == 0.0  # reference order: order is measured apart


def test_writer_styles_are_per_writer_and_perturbed_sets_pair_with_plain_ones():
    med = {"a": [np.array([[100.0, 200], [800, 200]]), np.array([[450.0, 100], [450, 850]])],
           "b": [np.array([[100.0, 100], [800, 800]])]}
    cfg = SynthConfig(writer_style=True, writers=3)
    ds = HanziSynthDataset(med, "ab", per_class=10, seed=1, synth_cfg=cfg)
    styles = {id(ds.style(i)) for i in range(len(ds))}
    assert len(styles) <= 3 and ds.style(5) is ds.style(5)
    plain = HanziSynthDataset.validation(med, "ab", 4)
    turned = HanziSynthDataset.validation(med, "ab", 4, perturb=PerturbConfig(swap=1.0, reverse=0, join=0))
    a, b = plain.ink(0)[0], turned.ink(0)[0]  # "a": its two strokes swapped, nothing else
    if a.num_strokes == 2:
        np.testing.assert_array_equal(a.strokes[1][:, :2], b.strokes[0][:, :2])
    assert not HanziSynthDataset(med, "ab", synth_cfg=SynthConfig()).style(0)
