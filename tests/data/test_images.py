import numpy as np
import pytest
from PIL import Image

from conftest import render_text
from inkpack.data.augment import AugmentConfig, augment
from inkpack.data.images import load_gray, prepare_line, resize_height, to_ink
from inkpack.errors import BadSampleError


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(BadSampleError, match="nope.png: file not found"):
        load_gray(missing)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(BadSampleError, match="empty.png: empty file"):
        load_gray(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello, not an image")
    with pytest.raises(BadSampleError, match="notes.png: not an image"):
        load_gray(text)
    good = tmp_path / "good.png"
    render_text("hello").save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(BadSampleError, match="trunc.png"):
        load_gray(trunc)
    for e in (BadSampleError("x"),):
        assert "\n" not in str(e)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (400, 300), 255).save(big)
    with pytest.raises(BadSampleError, match="too large .*120000 pixels"):
        load_gray(big, max_pixels=100_000)
    assert load_gray(big, max_pixels=120_000).shape == (300, 400)


def test_polarity_is_detected_and_ink_becomes_one():
    dark_on_light = np.asarray(render_text("ink"))
    light_on_dark = np.asarray(render_text("ink", invert=True))
    a, b = to_ink(dark_on_light), to_ink(light_on_dark)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    # paper (the majority) maps to 0 in both polarities, and both give the same picture
    assert np.median(a) == 0.0 and np.median(b) == 0.0
    assert np.abs(a - b).mean() < 0.02
    # the darkest pixel of the original is full ink
    assert a[np.unravel_index(dark_on_light.argmin(), a.shape)] == pytest.approx(1.0)


def test_resize_keeps_aspect_ratio():
    img = np.zeros((96, 300), np.float32)
    out = resize_height(img, 48)
    assert out.shape == (48, 150)
    assert prepare_line(np.full((10, 3), 200, np.uint8), 48).shape == (48, 14)


def test_augmentation_is_configurable_and_off_means_identity():
    img = to_ink(np.asarray(render_text("augment me")))
    rng = np.random.default_rng(0)
    same = augment(img, rng, AugmentConfig(enabled=False))
    assert same is img
    cfg = AugmentConfig(p_affine=1, p_elastic=1, p_blur=1, p_morph=1, p_contrast=1)
    out = augment(img, np.random.default_rng(1), cfg)
    assert out.shape[0] == img.shape[0] and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.array_equal(out[:, : img.shape[1]] if out.shape[1] >= img.shape[1] else out, img[:, : out.shape[1]])
    # deterministic for a given seed
    again = augment(img, np.random.default_rng(1), cfg)
    assert np.array_equal(out, again)


def test_to_ink_uint8_fast_path_equals_the_float_path():
    """The histogram/lookup-table path for uint8 scans gives the percentile path's values."""
    rng = np.random.default_rng(3)
    line = np.asarray(render_text("fast path"))
    cases = [line, 255 - line, rng.integers(0, 256, (31, 77), dtype=np.uint8),
             rng.integers(120, 136, (9, 40), dtype=np.uint8), np.full((4, 5), 200, np.uint8),
             np.array([[0, 255]], np.uint8)]
    for g in cases:
        fast, ref = to_ink(g), to_ink(g.astype(np.float32))  # float input takes np.percentile
        assert fast.dtype == ref.dtype == np.float32 and fast.shape == ref.shape
        assert np.abs(fast - ref).max() <= 2e-7
    assert to_ink(line).max() == 1.0 and to_ink(line).min() == 0.0
