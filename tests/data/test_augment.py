"""Augmentation options, and the zoom that imitates the collection's band crops."""

import numpy as np
import pytest

from conftest import make_tsv
from inkpack.data.augment import AugmentConfig, augment, zoom_band
from inkpack.errors import ConfigError
from inkpack.train.loop import TrainConfig, Trainer


def _bar(h=48, w=120, top=18, bottom=30):
    img = np.zeros((h, w), np.float32)
    img[top:bottom, 10:110] = 1.0
    return img


def test_zoom_keeps_a_band_around_the_ink_and_scales_both_ways():
    img = _bar()
    out = zoom_band(img, np.random.default_rng(0), (0.5, 0.5))
    assert out.shape == (48, 240)  # a 24-row band back to 48 rows: the width doubles too
    ink_rows = np.flatnonzero(out[:, 120] > 0.5)
    assert 22 <= len(ink_rows) <= 26  # the 12-row bar is twice as thick
    assert np.flatnonzero(out[ink_rows[0]] > 0.5).min() in range(19, 22)  # column 10 -> 20


def test_zoom_only_when_asked_and_deterministic():
    img = _bar()
    off = AugmentConfig(p_affine=0, p_elastic=0, p_blur=0, p_morph=0, p_contrast=0)
    assert np.array_equal(augment(img, np.random.default_rng(3), off), img)
    on = AugmentConfig(p_affine=0, p_elastic=0, p_blur=0, p_morph=0, p_contrast=0, p_zoom=1.0, zoom=(0.6, 0.8))
    a = augment(img, np.random.default_rng(3), on)
    assert a.shape[0] == 48 and 150 <= a.shape[1] <= 200  # 120 / 0.8 .. 120 / 0.6
    assert np.array_equal(a, augment(img, np.random.default_rng(3), on))


@pytest.mark.parametrize("opts, word", [({"p_zom": 0.1}, "unknown keys"), ({"p_zoom": 1.5}, "p_zoom"),
                                         ({"zoom": [0.9, 0.5]}, "zoom"), ({"zoom": [0.5, 1.5]}, "zoom"),
                                         ({"max_rotate": "a"}, "max_rotate")])
def test_bad_options_are_one_line_naming_the_key(opts, word):
    with pytest.raises(ConfigError) as e:
        TrainConfig(augment_options=opts).validate()
    assert str(e.value).startswith("augment_options: ") and word in str(e.value) and "\n" not in str(e.value)


def test_the_trainer_applies_the_options(tmp_path):
    tsv = make_tsv(tmp_path / "d", ["the cat", "a dog", "hello", "ink pack"])

    def widths(opts):
        tr = Trainer(TrainConfig(train=str(tsv), out=str(tmp_path / "o"), height=32, batch_size=4, epochs=1,
                                 progress=False, batching="pad-min", augment_options=opts,
                                 options={"feat_dim": 16, "lstm_hidden": 8}))
        tr.setup()
        idx = list(range(len(tr.train_set)))
        true = np.array([tr.train_set.images[i].shape[1] for i in idx])
        return tr._make_batch(idx).widths.numpy() / true

    plain = widths({})
    zoomed = widths({"p_zoom": 1.0, "zoom": [0.5, 0.5]})
    assert plain.max() < 1.6 and zoomed.min() > 1.6  # twice as wide, times the affine stretch


def test_zoom_batch_zooms_whole_batches_alike(tmp_path):
    from inkpack.data.augment import batch_zoom

    cfg = AugmentConfig(p_zoom=0.5, zoom_batch=True)
    picks = [batch_zoom(cfg, 1, 2, first) for first in range(200)]
    assert picks == [batch_zoom(cfg, 1, 2, first) for first in range(200)]  # pure
    zoomed = [z for z in picks if z is not None]
    assert 60 < len(zoomed) < 140 and all(0.4 <= z <= 0.8 for z in zoomed)
    assert batch_zoom(AugmentConfig(p_zoom=0.0, zoom_batch=True), 1, 2, 0) is None
    with pytest.raises(ConfigError, match="zoom_batch must be true or false"):
        TrainConfig(augment_options={"zoom_batch": 1}).validate()

    tsv = make_tsv(tmp_path / "d", ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be"])
    tr = Trainer(TrainConfig(train=str(tsv), out=str(tmp_path / "o"), height=32, batch_size=3, epochs=1,
                             progress=False, batching="pad-min", options={"feat_dim": 16, "lstm_hidden": 8},
                             augment_options={"p_zoom": 1.0, "zoom": [0.5, 0.5], "zoom_batch": True,
                                              "p_affine": 0.0, "p_elastic": 0.0}))
    tr.setup()
    for idx in ([0, 1, 2], [3, 4, 5]):
        true = np.array([tr.train_set.images[i].shape[1] for i in idx])
        ratio = tr._make_batch(idx).widths.numpy() / true
        assert np.allclose(ratio, 2.0, atol=0.05)  # every line of the batch, by the same factor
