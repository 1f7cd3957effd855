"""Synthetic handwriting from hanzi stroke medians."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from inkpack.data.hanzi_synth import (
    HanziSynthDataset,
    SynthConfig,
    collate_chars,
    load_charset,
    load_medians,
    synth,
)
from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError

HANZI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hanzi"
# a toy 3-stroke "character" in image coordinates (y down)
TOY = [np.array([[100.0, 200], [500, 210], [800, 200]]),
       np.array([[450.0, 100], [460, 500], [450, 850]]),
       np.array([[200.0, 600], [300, 700]])]
QUIET = SynthConfig(rotate_deg=0, shear=0, scale=0, aspect=0, stroke_rotate_deg=0,
                    stroke_scale=0, stroke_shift=0, warp_amp=0, join_prob=0, drop_max=0,
                    noise=0, stroke_speed=0)


def dist_to_polyline(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line[:-1], line[1:]
    ab = b - a
    u = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    return np.linalg.norm(p[:, None] - (a + u[..., None] * ab), axis=-1).min(1)


def test_deterministic_given_seed():
    a = synth(TOY, np.random.default_rng(7))
    b = synth(TOY, np.random.default_rng(7))
    c = synth(TOY, np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a.strokes, b.strokes))
    assert a.num_points != c.num_points or not np.allclose(a.xy(), c.xy())


def test_without_distortion_points_lie_on_the_medians():
    ink = synth(TOY, np.random.default_rng(0), QUIET)
    assert ink.num_strokes == 3
    for s, m in zip(ink.strokes, TOY):
        assert dist_to_polyline(s[:, :2], m).max() < 0.5  # resampling cuts corners a little
        np.testing.assert_allclose(s[[0, -1], :2], m[[0, -1]], atol=1e-6)
        assert np.allclose(np.diff(s[:, 2]), 10.0)  # the 10 ms clock
        # mean pen speed within the configured writer speed range (units per ms)
        length = np.linalg.norm(np.diff(m, axis=0), axis=1).sum()
        v = length / (s[-1, 2] - s[0, 2])
        assert 1.5 * 0.8 < v < 4.0 * 1.25
    starts = [s[0, 2] for s in ink.strokes]
    ends = [s[-1, 2] for s in ink.strokes]
    assert all(e + 60 <= s2 for e, s2 in zip(ends, starts[1:]))  # pen-up pauses


def test_distortion_moves_points_but_keeps_the_shape_near():
    dists = []
    for seed in range(20):
        ink = synth(TOY, np.random.default_rng(seed), SynthConfig(join_prob=0, drop_max=0))
        assert ink.num_strokes == 3
        dists.append(np.median(dist_to_polyline(ink.strokes[0][:, :2], TOY[0])))
    assert 1 < np.median(dists) < 120  # distorted, yet still the same stroke


def test_joining_merges_consecutive_strokes():
    ink = synth(TOY, np.random.default_rng(1), SynthConfig(join_prob=1.0, join_max_dist=1e9))
    assert ink.num_strokes == 1
    assert np.all(np.diff(ink.strokes[0][:, 2]) > 0)


def test_synth_rejects_empty_character():
    with pytest.raises(InkpackError):
        synth([], np.random.default_rng(0))


def _toy_dataset(**kw):
    med = {"一": [TOY[0]], "十": TOY[:2], "大": TOY}
    return HanziSynthDataset(med, "一十大", **kw)


def test_dataset_items_epochs_and_fixed_validation():
    tr = _toy_dataset(per_class=2, seed=3)
    assert len(tr) == 6
    f, c = tr[4]
    assert f.dtype == np.float32 and f.ndim == 2 and f.shape[1] == 6
    assert c == Alphabet(list("一十大")).encode("十")[0] == 2  # item 4 shows chars[1]
    np.testing.assert_array_equal(tr[4][0], f)
    tr.set_epoch(1)
    assert not np.array_equal(tr[4][0], f)
    va = HanziSynthDataset.validation({"一": [TOY[0]], "十": TOY[:2], "大": TOY}, "一十大")
    v0 = [va[i][0] for i in range(3)]
    va.set_epoch(5)
    va2 = _toy_dataset(seed=va.seed, split="val")
    for i in range(3):
        np.testing.assert_array_equal(va[i][0], v0[i])
        np.testing.assert_array_equal(va2[i][0], v0[i])
    with pytest.raises(InkpackError, match="no medians"):
        HanziSynthDataset({"一": [TOY[0]]}, "一十")


def test_collate_pads():
    ds = _toy_dataset()
    batch = [ds[i] for i in range(3)]
    x, lengths, y = collate_chars(batch)
    assert x.shape == (3, int(lengths.max()), 6) and y.tolist() == [1, 2, 3]
    for b, (f, _) in enumerate(batch):
        assert lengths[b] == len(f)
        np.testing.assert_array_equal(x[b, : len(f)].numpy(), f)
        assert x[b, len(f):].abs().sum() == 0


@pytest.mark.skipif(not (HANZI / "medians.json.gz").exists(), reason="shared data absent")
def test_real_medians_and_level1_chars():
    med = load_medians(HANZI / "medians.json.gz")
    chars = load_charset(HANZI / "gb2312_level1.txt")
    raw = json.load(gzip.open(HANZI / "medians.json.gz", "rt", encoding="utf-8"))
    assert len(chars) == 3755 and len(med) == len(raw)
    for ch in (chars[0], "中", chars[-1]):
        r = np.array(raw[ch][0], dtype=float)
        np.testing.assert_array_equal(med[ch][0], np.column_stack([r[:, 0], 900 - r[:, 1]]))
    ds = HanziSynthDataset(med, chars, label_offset=0)
    assert len(ds) == 3755
    for i in (0, 1000, 3754):
        f, c = ds[i]
        assert c == i and 5 < len(f) < 1000 and np.isfinite(f).all()
    ink, _ = ds.ink(chars.index("中"))
    assert ink.label == "中" and 1 <= ink.num_strokes <= len(med["中"])
