"""The text of an InkML ``<trace>``: points separated by commas, values by whitespace.

Plain decimal traces take a fast path. Otherwise the InkML 1.0 value grammar is read:
``!`` (explicit), ``'`` (first difference) and ``"`` (second difference) prefixes, which stay
in force for that channel until the next prefix (Microsoft Office / OneNote write traces so);
values run together when a sign separates them (``'1-2``); ``#hex`` numbers; ``T``/``F``
booleans; ``?`` and ``*`` (unknown / unchanged, used on intermittent channels) read as NaN.
"""

from __future__ import annotations

import re

import numpy as np

from inkpack.errors import BadSampleError

_TOKEN = re.compile(r"""\s*(?P<q>[!'"])?\s*(?P<v>\#[0-9A-Fa-f]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[TF*?])""")


def decode_trace(text: str, where: str, min_values: int = 1) -> np.ndarray:
    """``(points, values)`` float64 array; ``BadSampleError`` naming ``where`` if malformed.

    Every point needs ``min_values`` values (the regular channels); points may differ in the
    values after those (intermittent channels), which are padded with NaN.
    """
    pieces = [p for p in text.split(",") if p.strip()]
    if not pieces:
        raise BadSampleError(f"{where} is empty")
    try:
        a = np.array([p.split() for p in pieces], dtype=np.float64)
        if a.ndim == 2:
            return a
    except ValueError:
        pass
    rows = [_values(p, where) for p in pieces]
    short = min(len(r) for r in rows)
    if short < min_values:
        raise BadSampleError(f"{where} is not a list of numeric points (a point has {short} values, "
                             f"the format needs {min_values})")
    k = max(len(r) for r in rows)
    return _undifference([r + [(None, float("nan"))] * (k - len(r)) for r in rows])


def _values(point: str, where: str) -> list[tuple[str | None, float]]:
    out, pos, end = [], 0, len(point.rstrip())
    while pos < end:
        m = _TOKEN.match(point, pos)
        if m is None or m.end() == pos:
            raise BadSampleError(f"{where} is not a list of numeric points (at {point[pos:pos + 12].strip()!r})")
        v = m.group("v")
        if v.startswith("#"):
            num = float(int(v[1:], 16))
        elif v in ("T", "F"):
            num = 1.0 if v == "T" else 0.0
        elif v in ("*", "?"):
            num = float("nan")
        else:
            num = float(v)
        out.append((m.group("q"), num))
        pos = m.end()
    return out


def _undifference(rows: list[list[tuple[str | None, float]]]) -> np.ndarray:
    k = len(rows[0])
    mode = ["!"] * k  # a prefix stays in force for its channel
    value = np.zeros(k)
    velocity = np.zeros(k)
    out = np.empty((len(rows), k))
    for i, row in enumerate(rows):
        for c, (q, v) in enumerate(row):
            if q is not None:
                mode[c] = q
            if mode[c] == "!" or i == 0:
                new = v
            elif mode[c] == "'":
                new = value[c] + v
            else:  # second difference: the velocity changes by v
                new = value[c] + velocity[c] + v
            velocity[c] = new - value[c] if i > 0 else 0.0
            value[c] = new
        out[i] = value
    return out
