"""Images as users have them: 16-bit gray, EXIF orientation, palette/alpha/CMYK, hostile
PNG text chunks, lines too wide after scaling, and warnings for non-line images."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import render_text
from inkpack.data.images import (
    DEFAULT_MAX_LINE_WIDTH,
    LineImageWarning,
    check_line_size,
    line_image_warnings,
    load_gray,
    prepare_line,
    warn_line_image,
)
from inkpack.data.lines import load_lineset
from inkpack.errors import BadSampleError, ConfigError, InputTooLargeError


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, the gray any viewer shows for RGB."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - np.round(b).astype(int)).max()) <= tol


# ------------------------------------------------------------------ 16-bit and float gray
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_gray_is_scaled_over_its_range(tmp_path, fmt):
    rng = np.random.default_rng(0)
    a = rng.integers(3500, 4096, (20, 60)).astype(np.uint16)  # a 12-bit scan in a 16-bit file
    a[8:12, 10:50] = 300  # ink
    path = tmp_path / f"scan16.{fmt.lower()}"
    Image.fromarray(a).save(path, fmt)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    lo, hi = 300.0, float(a.max())
    expected = (a.astype(np.float64) - lo) * 255.0 / (hi - lo)
    got = load_gray(path)
    assert got.dtype == np.uint8 and _close(got, expected)
    # the old conversion clipped every value over 255: all white, no ink, empty text
    assert prepare_line(got, 20)[8:12, 10:50].min() > 0.99


def test_32_bit_int_and_float_gray_and_constant_images(tmp_path):
    a = np.linspace(-5.0, 20.0, 50, dtype=np.float32).reshape(5, 10)
    Image.fromarray(a, mode="F").save(tmp_path / "f.tiff")
    assert _close(load_gray(tmp_path / "f.tiff"), (a + 5.0) * 255.0 / 25.0)
    b = (np.arange(50, dtype=np.int32).reshape(5, 10) * 1000)
    Image.fromarray(b, mode="I").save(tmp_path / "i.tiff")
    assert _close(load_gray(tmp_path / "i.tiff"), b * 255.0 / 49000.0)
    Image.fromarray(np.full((4, 9), 65535, np.uint16)).save(tmp_path / "white16.png")
    assert (load_gray(tmp_path / "white16.png") == 255).all()


# ------------------------------------------------------------------ EXIF orientation
# What the EXIF spec says each orientation means for the stored pixels (independent of Pillow).
UPRIGHT = {
    1: lambda s: s,
    2: np.fliplr,
    3: lambda s: np.rot90(s, 2),
    4: np.flipud,
    5: lambda s: s.T,
    6: lambda s: np.rot90(s, -1),  # stored turned 90 degrees counter-clockwise: turn it clockwise
    7: lambda s: np.rot90(s, 2).T,
    8: lambda s: np.rot90(s, 1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = (np.arange(3 * 5).reshape(3, 5) * 17).astype(np.uint8)  # no symmetry
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    assert np.array_equal(load_gray(path), UPRIGHT[orientation](stored))


def test_exif_rotated_jpeg_photo_of_a_line(tmp_path):
    line = np.asarray(render_text("rotated line", height=40))
    stored = np.ascontiguousarray(np.rot90(line, 1))  # a phone held upright: stored portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    got = load_gray(path)
    assert got.shape == line.shape and np.abs(got.astype(int) - line).mean() < 2
    assert line_image_warnings(got) == []
    assert any("portrait" in w for w in line_image_warnings(stored))


def test_damaged_exif_is_ignored(tmp_path):
    path = tmp_path / "bad_exif.jpg"
    Image.new("L", (30, 10), 200).save(path, exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    assert load_gray(path).shape == (10, 30)


# ------------------------------------------------------------------ palette, alpha, CMYK
def test_palette_with_transparency_is_white_paper(tmp_path):
    colors = np.array([[255, 255, 255], [20, 40, 200], [200, 30, 10], [0, 0, 0]], np.uint8)
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette(colors.ravel().tolist())
    path = tmp_path / "pal.png"
    img.save(path, transparency=3)  # index 3 (black) is transparent
    expected = _luma(colors[idx])
    expected[idx == 3] = 255.0
    assert _close(load_gray(path), expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
    rgb = np.array([[[10, 20, 30], [200, 100, 50], [0, 0, 0]]], np.uint8)
    alpha = np.array([[255, 128, 0]], np.uint8)
    if mode == "RGBA":
        arr, fg = np.dstack([rgb, alpha]), _luma(rgb)
    else:
        gray = np.round(_luma(rgb)).astype(np.uint8)
        arr, fg = np.dstack([gray, alpha]), gray.astype(np.float64)
    path = tmp_path / f"alpha_{mode}.png"
    Image.fromarray(arr, mode=mode).save(path)
    a = alpha / 255.0
    assert _close(load_gray(path), fg * a + 255.0 * (1 - a), tol=2)


def test_gray_png_with_a_transparent_value(tmp_path):
    g = np.array([[0, 100, 200]], np.uint8)
    path = tmp_path / "trns.png"
    Image.fromarray(g).save(path, transparency=0)
    assert np.array_equal(load_gray(path), np.array([[255, 100, 200]], np.uint8))


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk(tmp_path, fmt):
    cmyk = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [10, 20, 30, 40], [200, 0, 100, 10]]], np.uint8)
    cmyk = np.repeat(np.repeat(cmyk, 8, 0), 8, 1)  # 8x8 blocks survive JPEG
    path = tmp_path / f"cmyk.{fmt.lower()}"
    Image.fromarray(cmyk, mode="CMYK").save(path, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    rgb = (255.0 - c) * (255.0 - k) / 255.0
    assert _close(load_gray(path), _luma(rgb), tol=1 if fmt == "TIFF" else 4)


# ------------------------------------------------------------------ hostile chunks
@pytest.mark.parametrize("after_idat", [False, True])
def test_huge_png_text_chunk_is_one_line_error(tmp_path, after_idat):
    buf = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buf, "PNG")
    png = buf.getvalue()
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 20_000_000, zip=True)  # 20 MB when inflated, ~20 KB stored
    buf2 = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buf2, "PNG", pnginfo=info)
    chunk = buf2.getvalue()
    start = chunk.index(b"zTXt") - 4
    end = start + 12 + int.from_bytes(chunk[start:start + 4], "big")
    ztxt = chunk[start:end]
    at = png.index(b"IEND") - 4 if after_idat else png.index(b"IDAT") - 4
    path = tmp_path / "bomb.png"
    path.write_bytes(png[:at] + ztxt + png[at:])
    if after_idat:  # Pillow does not inflate text after the pixels: the image reads normally
        assert np.array_equal(load_gray(path), np.full((8, 8), 200, np.uint8))
        return
    with pytest.raises(BadSampleError) as e:  # a ValueError from Pillow, uncaught before
        load_gray(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg and "too large" in msg.lower()


# ------------------------------------------------------------------ width after scaling
def test_width_after_scaling_is_refused_from_the_header(tmp_path):
    path = tmp_path / "thin.png"
    Image.new("L", (20_000, 1), 255).save(path)
    with pytest.raises(InputTooLargeError, match=r"thin.png: line image too wide: 20000x1 px would be "
                                                 r"960000 px wide at the model's height 48 \(limit 16000"):
        load_gray(path, height=48)
    gray = load_gray(path)  # without a height it decodes (20,000 pixels) ...
    with pytest.raises(InputTooLargeError, match="^thin.png: line image too wide"):
        prepare_line(gray, 48, name="thin.png")  # ... and preparing refuses before resizing
    assert DEFAULT_MAX_LINE_WIDTH == 16_000
    assert check_line_size(333, 1, 48) == 15_984  # just under the limit
    with pytest.raises(InputTooLargeError):
        check_line_size(334, 1, 48)
    assert check_line_size(334, 1, 48, max_width=20_000) == 16_032


def test_width_limit_from_the_environment_and_exif(tmp_path, monkeypatch):
    monkeypatch.setenv("INKPACK_MAX_LINE_WIDTH", "100")
    with pytest.raises(InputTooLargeError, match="limit 100 px"):
        prepare_line(np.full((10, 30), 200, np.uint8), 48)  # 144 px wide at height 48
    assert prepare_line(np.full((48, 100), 200, np.uint8), 48).shape == (48, 100)
    # stored 1 x 400 (fine), shown 400 x 1 after EXIF orientation 6: 19,200 px at height 48
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (1, 400), 255).save(tmp_path / "turned.png", exif=exif)
    monkeypatch.delenv("INKPACK_MAX_LINE_WIDTH")
    with pytest.raises(InputTooLargeError, match="400x1 px"):
        load_gray(tmp_path / "turned.png", height=48)
    monkeypatch.setenv("INKPACK_MAX_LINE_WIDTH", "many")
    with pytest.raises(ConfigError, match="INKPACK_MAX_LINE_WIDTH"):
        prepare_line(np.full((10, 30), 200, np.uint8), 48)


def test_a_too_wide_row_is_skipped_and_counted(tmp_path):
    (tmp_path / "img").mkdir()
    render_text("hello").save(tmp_path / "img" / "good.png")
    Image.new("L", (20_000, 1), 255).save(tmp_path / "img" / "thin.png")
    Image.new("L", (1_000_000, 1), 255).save(tmp_path / "img" / "thinner.png")
    tsv = tmp_path / "data.tsv"
    tsv.write_text("image\ttext\nimg/thin.png\tx\nimg/good.png\thello\nimg/thinner.png\ty\n", encoding="utf-8")
    lines = load_lineset(str(tsv), 48, progress=False)
    assert lines.texts == ["hello"] and len(lines.skipped) == 2
    assert all("line image too wide" in s and "\n" not in s for s in lines.skipped)
    assert "thin.png" in lines.skipped[0] and "thinner.png" in lines.skipped[1]


# ------------------------------------------------------------------ line-image warnings
def _page(n_lines: int = 8) -> np.ndarray:
    lines = [np.asarray(render_text(w, height=40)) for w in ["dear sir", "the cat", "kew gardens", "to be"]]
    width = 300
    rows = []
    for i in range(n_lines):
        ln = lines[i % len(lines)]
        pad = np.full((40, width), 230, np.uint8)
        pad[:, : ln.shape[1]] = ln[:, :width]
        rows += [pad, np.full((14, width), 230, np.uint8)]
    return np.vstack(rows)


def test_line_images_get_no_warning():
    for text in ["hello", "the cat sat on the mat", "ink pack"]:
        assert line_image_warnings(np.asarray(render_text(text))) == []
        assert line_image_warnings(np.asarray(render_text(text, invert=True))) == []


def test_page_rotated_and_blank_images_get_warnings():
    page = _page()
    msgs = line_image_warnings(page)
    assert any(m.startswith("portrait image (300x432 px)") for m in msgs)
    assert any(m.startswith("8 separate bands of ink rows") for m in msgs)
    landscape = np.hstack([page, page, page])  # 900 x 432: not portrait, still 8 lines
    assert [m.split(" separate")[0] for m in line_image_warnings(landscape)] == ["8"]
    turned = np.ascontiguousarray(np.rot90(landscape))  # a page given sideways
    assert any("rotated by 90 degrees" in m for m in line_image_warnings(turned))
    line = np.asarray(render_text("the cat sat on the mat"))
    assert any(m.startswith("portrait") for m in line_image_warnings(np.ascontiguousarray(np.rot90(line))))
    for blank in (np.full((40, 300), 230, np.uint8), np.zeros((40, 300), np.uint8)):
        assert [m[:13] for m in line_image_warnings(blank)] == ["no ink found "]
    assert all("\n" not in m for m in msgs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_line_image(page, "page.png") == msgs
    assert [str(w.message) for w in caught] == [f"page.png: {m}" for m in msgs]
    assert all(w.category is LineImageWarning for w in caught)
