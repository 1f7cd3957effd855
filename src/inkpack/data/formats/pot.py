"""CASIA OLHWDB ``.pot`` online character files (read and write).

Each sample, little-endian: uint16 size (bytes of the whole sample), 4-byte tag code
(the GB2312/GBK/GB18030 bytes of the label in natural order, padded with zero bytes),
uint16 stroke count, then int16 ``(x, y)`` pairs where ``(-1, 0)`` ends a stroke and
``(-1, -1)`` ends the sample. The format has no timing: points get the nominal clock
of ``inkpack.data.ink``.

Damage policy (see ``inkpack.data.ink``): a sample whose body is inconsistent (stroke
count, empty stroke, missing end marker, undecodable tag) is skipped and reading goes
on at the next sample, since the size field still tells where it starts; a size field
that is too small or runs past the end of the file stops reading there.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from inkpack.data.ink import Collector, Ink, InkList, nominal_times
from inkpack.errors import BadSampleError, InkpackError

HEADER = struct.Struct("<H4sH")
STROKE_END = (-1, 0)
SAMPLE_END = (-1, -1)


def read_pot(path: str | Path, strict: bool = True) -> InkList:
    """All samples of one ``.pot`` file; ``Ink.id`` is ``"<file name>:<index>"``."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InkpackError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_pot(data, name=str(path), strict=strict)


def parse_pot(data: bytes, name: str = "<bytes>", strict: bool = True) -> InkList:
    col = Collector(strict)
    pos, i, n = 0, 0, len(data)
    base = Path(name).name
    while pos < n:
        left = n - pos
        if left < HEADER.size:
            col.error(BadSampleError(f"{name}: sample {i}: truncated header ({left} bytes left)"))
            break
        size = HEADER.unpack_from(data, pos)[0]
        if size < HEADER.size + 4:
            col.error(BadSampleError(f"{name}: sample {i}: size field {size} is too small"))
            break
        if size > left:
            col.error(BadSampleError(
                f"{name}: sample {i}: truncated (size field {size}, {left} bytes left)"))
            break
        chunk = data[pos:pos + size]
        col.add(lambda chunk=chunk, i=i: _decode(chunk, f"{name}: sample {i}", f"{base}:{i}"))
        pos += size
        i += 1
    return col.out


def _decode(chunk: bytes, where: str, sid: str) -> Ink:
    _, tag, nstrokes = HEADER.unpack_from(chunk, 0)
    label = _decode_tag(tag, where)
    body = chunk[HEADER.size:]
    if len(body) % 4:
        raise BadSampleError(f"{where}: point data of {len(body)} bytes is not whole (x, y) pairs")
    xy = np.frombuffer(body, dtype="<i2").reshape(-1, 2).astype(np.int64)
    is_end = (xy[:, 0] == -1) & (xy[:, 1] == -1)
    ends = np.flatnonzero(is_end)
    if len(ends) == 0 or ends[0] != len(xy) - 1:
        raise BadSampleError(f"{where}: sample end marker (-1, -1) missing or misplaced")
    xy = xy[:-1]
    stops = np.flatnonzero((xy[:, 0] == -1) & (xy[:, 1] == 0))
    if len(stops) == 0 or stops[-1] != len(xy) - 1:  # last stroke closed only by (-1, -1)
        stops = np.append(stops, len(xy))
    starts = np.concatenate([[0], stops[:-1] + 1])
    if np.any(stops - starts <= 0):
        raise BadSampleError(f"{where}: empty stroke")
    if len(stops) != nstrokes:
        raise BadSampleError(f"{where}: stroke count field {nstrokes}, found {len(stops)} strokes")
    xyt = np.column_stack([xy.astype(np.float64), np.zeros(len(xy))])
    strokes = [xyt[a:b] for a, b in zip(starts, stops)]
    t = nominal_times(int(np.sum(stops - starts)))  # one clock over the real points
    k = 0
    for s in strokes:
        s[:, 2] = t[k:k + len(s)]
        k += len(s)
    return Ink(strokes, label=label, id=sid)


def _decode_tag(tag: bytes, where: str) -> str | None:
    raw = bytes(b for b in tag if b)
    if not raw:
        return None
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise BadSampleError(f"{where}: tag code {tag.hex()} is not GB18030 text") from None


def _encode_tag(label: str | None, where: str) -> bytes:
    if not label:
        return b"\0" * 4
    try:
        raw = label.encode("gb18030")
    except UnicodeEncodeError:
        raise BadSampleError(f"{where}: label {label!r} has no GB18030 encoding") from None
    if len(raw) > 4 or b"\0" in raw:
        raise BadSampleError(f"{where}: label {label!r} does not fit the 4-byte tag code")
    return raw.ljust(4, b"\0")


def sample_bytes(ink: Ink, where: str = "ink") -> bytes:
    """One sample in ``.pot`` layout; coordinates are rounded to integers."""
    ink.check(where)
    rows = []
    for k, s in enumerate(ink.strokes):
        xy = np.rint(s[:, :2]).astype(np.int64)
        if xy.min() < -32768 or xy.max() > 32767:
            raise BadSampleError(f"{where}: stroke {k} has coordinates outside int16")
        if np.any((xy[:, 0] == -1) & ((xy[:, 1] == 0) | (xy[:, 1] == -1))):
            raise BadSampleError(f"{where}: stroke {k} has a point equal to a .pot end marker")
        rows.append(xy)
        rows.append(np.array([STROKE_END]))
    rows.append(np.array([SAMPLE_END]))
    body = np.concatenate(rows).astype("<i2").tobytes()
    size = HEADER.size + len(body)
    if size > 0xFFFF or ink.num_strokes > 0xFFFF:
        raise BadSampleError(f"{where}: too many points for one .pot sample ({size} bytes)")
    return HEADER.pack(size, _encode_tag(ink.label, where), ink.num_strokes) + body


def write_pot(path: str | Path, inks: Iterable[Ink]) -> None:
    """Write samples (label = one character, or None) so ``read_pot`` returns them."""
    out = b"".join(sample_bytes(ink, f"{path}: sample {i}") for i, ink in enumerate(inks))
    try:
        Path(path).write_bytes(out)
    except OSError as e:
        raise InkpackError(f"{path}: cannot write ({e.strerror or e})") from None
