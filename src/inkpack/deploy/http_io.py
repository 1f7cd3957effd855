"""Request reading for the server: size limits, content types, image sniffing, ink bodies.

Everything here turns bad input into an ``ApiError`` with the status the client should see
(413 too large, 415 wrong type, 422 malformed), so the handlers stay short and the server
never answers a client's mistake with a 500.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/tiff": "TIFF"}
GENERIC_TYPES = {"", "application/octet-stream"}
INKML_TYPES = {"application/inkml+xml", "application/xml", "text/xml"}
JSON_TYPES = {"application/json"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, f"request body of {int(declared)} bytes is over the "
                                               f"limit of {self.max_bytes} bytes")
        seen = 0
        limit = self.max_bytes

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
            return msg

        return await self.app(scope, limited, send)


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request):
    try:
        return await request.form(max_files=8, max_fields=32)
    except BodyTooLarge:
        raise
    except StarletteHTTPException as e:
        raise ApiError(422, f"malformed multipart body: {e.detail}") from None
    except Exception as e:  # python-multipart raises several parse errors
        raise ApiError(422, f"malformed multipart body ({type(e).__name__}: {e})") from None


async def upload_bytes(request: Request, names: str | tuple[str, ...], form=None,
                       kind: str = "image") -> tuple[bytes, str]:
    """``(data, declared content type)`` from a multipart field (first of ``names``) or a raw body."""
    names = (names,) if isinstance(names, str) else names
    ct = content_type(request)
    if ct.startswith("multipart/form-data"):
        form = form if form is not None else await read_form(request)
        value = next((form.get(n) for n in names if form.get(n) is not None), None)
        if value is None:
            raise ApiError(422, f"multipart field {names[0]!r} is missing ({kind} expected)")
        if isinstance(value, UploadFile):
            data = await value.read()
            declared = (value.content_type or "").split(";")[0].strip().lower()
        else:
            data, declared = value.encode("utf-8"), ""
    elif kind == "image" and (ct in IMAGE_TYPES or ct == "application/octet-stream"):
        data, declared = await request.body(), ct
    else:
        raise ApiError(415, f"unsupported content type {ct or 'none'!r}: send multipart/form-data with a "
                            f"{names[0]!r} field" + (" or a PNG/JPEG/TIFF body" if kind == "image" else ""))
    if not data:
        raise ApiError(422, f"{kind} {names[0]!r} is empty")
    return data, declared


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def check_image_bytes(data: bytes, declared: str, max_pixels: int, height: int | None = None,
                      max_width: int | None = None) -> None:
    """415 unless PNG/JPEG/TIFF; 422 if it claims to be one but is not; 413 over ``max_pixels``
    or, given the model's ``height``, when the line would be wider than ``max_width`` (default
    ``inkpack.data.images.max_line_width()``) once scaled to it - all from the header."""
    if declared not in IMAGE_TYPES and declared not in GENERIC_TYPES:
        raise ApiError(415, f"unsupported image type {declared!r}: send image/png, image/jpeg or image/tiff")
    fmt = sniff_image(data)
    if fmt is None:
        if declared in GENERIC_TYPES:
            raise ApiError(415, "unsupported image format: send a PNG, JPEG or TIFF image")
        raise ApiError(422, f"the body is not a valid {IMAGE_TYPES[declared]} image (bad signature)")
    from PIL import Image

    from inkpack.data.images import check_line_size, upright_size
    from inkpack.errors import InputTooLargeError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ApiError(413, f"image too large: {w}x{h} = {w * h} pixels is over the limit of {max_pixels}")
            if height is not None:
                check_line_size(*upright_size(im), height, "image", max_width)
    except ApiError:
        raise
    except InputTooLargeError as e:
        raise ApiError(413, str(e)) from None
    except Exception as e:  # PIL raises several types for damaged headers
        raise ApiError(422, f"cannot read the {fmt} image header ({type(e).__name__})") from None


def parse_ink_body(body: bytes, ct: str, max_points: int):
    """JSON ``{"strokes": [[[x, y, t?], ...], ...]}`` or InkML → its first ``Ink``."""
    return parse_ink_samples(body, ct, max_points)[0]


def parse_ink_samples(body: bytes, ct: str, max_points: int) -> list:
    """JSON ``{"strokes": [[[x, y, t?], ...], ...]}`` (one sample) or InkML (every ``<traceGroup>``
    sample) → a list of ``Ink``; ``max_points`` bounds the points of all samples together (413)."""
    from inkpack.data.ink import Ink

    if not body:
        raise ApiError(422, "empty body: send JSON {\"strokes\": [[[x, y, t], ...], ...]} or InkML")
    if ct in JSON_TYPES:
        obj = _loads(body)
        strokes = obj.get("strokes") if isinstance(obj, dict) else None
        if not isinstance(strokes, list) or not strokes:
            raise ApiError(422, "JSON body needs a non-empty 'strokes' list of strokes of [x, y, t] points")
        total = sum(len(s) for s in strokes if isinstance(s, list))
        if total > max_points:
            raise ApiError(413, f"ink too large: {total} points is over the limit of {max_points}")
        starts = np.cumsum([0] + [len(s) for s in strokes])
        inks = [Ink([_stroke(s, i, int(starts[i])) for i, s in enumerate(strokes)], id="ink")]
    elif ct in INKML_TYPES:
        from inkpack.data.formats.inkml import parse_inkml

        inks = parse_inkml(body, name="InkML body", strict=True)
        if not inks:
            raise ApiError(422, "InkML body has no ink sample")
        total = sum(ink.num_points for ink in inks)
        if total > max_points:
            raise ApiError(413, f"ink too large: {total} points in {len(inks)} samples is over the limit "
                                f"of {max_points}")
    else:
        raise ApiError(415, f"unsupported content type {ct or 'none'!r}: send application/json or "
                            "application/inkml+xml")
    if len(inks) == 1:
        return [inks[0].check("ink", max_points=max_points)]
    return [ink.check(f"ink sample {i} ({ink.id})", max_points=max_points) for i, ink in enumerate(inks)]


MAX_NUMBER_CHARS = 40  # a coordinate or time written with more characters is not a measurement


def _number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ApiError(422, f"JSON number of {len(text)} characters: point values must be ordinary numbers")
    value = float(text)  # a big integer becomes a float, never an int of thousands of digits
    if not math.isfinite(value):
        raise ApiError(422, f"JSON number {text[:20]} is out of range: point values must be finite numbers")
    return value


def _constant(name: str):
    raise ApiError(422, f"JSON constant {name} is not allowed: point values must be finite numbers")


def _loads(body: bytes):
    """``json.loads`` for untrusted bodies: 422 for deep nesting (``RecursionError``), numbers
    of hundreds of digits (``OverflowError`` / the int-conversion ``ValueError``), NaN/Infinity."""
    try:
        return json.loads(body, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(422, f"malformed JSON ({e})") from None
    except RecursionError:
        raise ApiError(422, "JSON nested too deeply: send {\"strokes\": [[[x, y, t], ...], ...]}") from None
    except (ValueError, OverflowError) as e:
        raise ApiError(422, f"bad JSON number ({e})") from None


def _stroke(s, i: int, start: int) -> np.ndarray:
    where = f"strokes[{i}]"
    if not isinstance(s, list) or not s:
        raise ApiError(422, f"{where}: a stroke must be a non-empty list of [x, y] or [x, y, t] points")
    width = len(s[0]) if isinstance(s[0], list) else 0
    if width not in (2, 3) or any(not isinstance(p, list) or len(p) != width for p in s):
        raise ApiError(422, f"{where}: every point must be [x, y] or [x, y, t] (same for the whole stroke)")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for p in s for v in p):
        raise ApiError(422, f"{where}: point values must be finite numbers")
    a = np.asarray(s, dtype=np.float64)
    if width == 2:
        a = np.column_stack([a, (start + np.arange(len(a))) * 10.0])  # nominal 100 Hz
    return a
