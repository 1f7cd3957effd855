"""Request bodies under hostile input: each gives an ApiError with a 4xx status, never an
uncaught RecursionError / OverflowError / ValueError (a 500), and size limits are read from
the image header before decoding."""

import io

import pytest
from PIL import Image

pytest.importorskip("starlette")
from inkpack.deploy.http_io import ApiError, check_image_bytes, parse_ink_body  # noqa: E402


def _status(fn, *args, **kw) -> tuple[int, str]:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value.status, e.value.message


@pytest.mark.parametrize("body,needle", [
    (b'{"strokes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"strokes": [[[1' + b"0" * 400 + b', 2]]]}', "characters"),
    (b'{"strokes": [[[1' + b"0" * 5000 + b', 2]]]}', "characters"),
    (b'{"strokes": [[[1e400, 2]]]}', "out of range"),
    (b'{"strokes": [[[NaN, 2]]]}', "NaN"),
    (b'{"strokes": [[[1, Infinity]]]}', "Infinity"),
])
def test_hostile_json_ink_is_422(body, needle):
    status, msg = _status(parse_ink_body, body, "application/json", 100_000)
    assert status == 422 and needle in msg and "\n" not in msg


def test_ordinary_json_ink_still_parses():
    ink = parse_ink_body(b'{"strokes": [[[1, 2, 0], [3.5, 4, 10]], [[5, 6]]]}', "application/json", 100)
    assert ink.num_points == 3 and ink.strokes[0][1].tolist() == [3.5, 4.0, 10.0]
    assert _status(parse_ink_body, b'{"strokes": [[[1, 2]], [[3, 4], [5, 6]]]}', "application/json", 2)[0] == 413


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, "PNG")
    return buf.getvalue()


def test_image_too_wide_after_scaling_is_413_from_the_header():
    thin = _png(20_000, 1)
    check_image_bytes(thin, "image/png", 40_000_000)  # no model height: only the pixel count
    status, msg = _status(check_image_bytes, thin, "image/png", 40_000_000, height=48)
    assert status == 413 and "960000 px wide" in msg
    check_image_bytes(_png(2000, 60), "image/png", 40_000_000, height=48)
    assert _status(check_image_bytes, _png(400, 300), "image/png", 100_000)[0] == 413
