"""The in-memory pen trajectory (``Ink``) shared by readers, preprocessing and renderers.

An ``Ink`` is a list of strokes (pen down ... pen up); each stroke is a float64 array
``[k, 3]`` of ``x, y, t`` with image axes (origin top-left, **y grows downward**) and
``t`` in milliseconds since the first point of the sample. Formats without timing
(CASIA ``.pot``, untimed InkML) get ``t = point index * 10`` (a nominal 100 Hz clock),
so ``t`` is always finite and non-decreasing in what the readers return.

What counts as a bad sample (``Ink.check``): no strokes, an empty stroke, a NaN/inf
value, or a coordinate whose magnitude exceeds ``MAX_COORD``. A **single-point stroke
is valid**: it is a dot (about 1% of IAM-OnDB strokes are), and every function of
this package accepts it.

Reading policy for damaged files (every reader in ``inkpack.data.formats``):

* ``strict=True`` (default): the first bad sample raises ``BadSampleError`` naming the
  file and the sample index; a file that cannot be parsed at all raises ``InkpackError``.
* ``strict=False``: bad samples are skipped and their errors collected in the
  returned ``InkList.errors``; the readable samples are returned. Samples after a
  point where the format loses synchronisation (a truncated ``.pot`` size field,
  broken XML) are reported as one error and not guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inkpack.errors import BadSampleError, InkpackError, InputTooLargeError

MAX_COORD = 1e6
NOMINAL_DT_MS = 10.0
# The most points one ink may have: 50 times the longest IAM-OnDB line (1,940 points), and
# what the service accepts by default. Override with ``INKPACK_MAX_INK_POINTS``.
DEFAULT_MAX_POINTS = 100_000
MAX_POINTS_ENV = "INKPACK_MAX_INK_POINTS"


def max_ink_points() -> int:
    """The default points limit: ``INKPACK_MAX_INK_POINTS`` or ``DEFAULT_MAX_POINTS``."""
    from inkpack.limits import env_limit

    return env_limit(MAX_POINTS_ENV, DEFAULT_MAX_POINTS, "points")


def check_num_points(n: int, where: str = "ink", limit: int | None = None) -> None:
    """``InputTooLargeError`` naming ``where`` if ``n`` points exceed ``limit`` (default
    :func:`max_ink_points`)."""
    limit = max_ink_points() if limit is None else int(limit)
    if n > limit:
        raise InputTooLargeError(
            f"{where}: ink too large: {n} points is over the limit of {limit} (raise it with {MAX_POINTS_ENV})"
        )


@dataclass
class Ink:
    """A handwritten sample: strokes of ``[k, 3]`` float64 (x, y, t), plus label and id."""

    strokes: list[np.ndarray]
    label: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        self.strokes = [_as_stroke(s) for s in self.strokes]

    @property
    def num_strokes(self) -> int:
        return len(self.strokes)

    @property
    def num_points(self) -> int:
        return int(sum(len(s) for s in self.strokes))

    def __len__(self) -> int:
        return self.num_points

    def xy(self) -> np.ndarray:
        """All points ``[N, 2]`` in writing order."""
        if not self.strokes:
            return np.zeros((0, 2))
        return np.concatenate([s[:, :2] for s in self.strokes])

    def bbox(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)``; raises on an ink without points."""
        p = self.xy()
        if len(p) == 0:
            raise BadSampleError(f"{self.name()}: ink has no points, no bounding box")
        lo, hi = p.min(0), p.max(0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def name(self) -> str:
        return self.id if self.id is not None else "ink"

    def to_points(self) -> tuple[np.ndarray, np.ndarray]:
        """``(points [N, 3] = x, y, pen_end, times [N])``: the flat form of the npz files."""
        if not self.strokes:
            return np.zeros((0, 3)), np.zeros(0)
        pts = np.concatenate(self.strokes)
        pen_end = np.zeros(len(pts))
        pen_end[np.cumsum([len(s) for s in self.strokes]) - 1] = 1.0
        return np.column_stack([pts[:, :2], pen_end]), pts[:, 2].copy()

    @classmethod
    def from_points(
        cls,
        points: np.ndarray,
        times: np.ndarray | None = None,
        label: str | None = None,
        id: str | None = None,
    ) -> "Ink":
        """Inverse of ``to_points``; a final point without ``pen_end`` still closes its stroke."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise BadSampleError(f"{id or 'ink'}: points must be [N, 3], got {points.shape}")
        n = len(points)
        t = nominal_times(n) if times is None else np.asarray(times, dtype=np.float64)
        if len(t) != n:
            raise BadSampleError(f"{id or 'ink'}: {len(t)} times for {n} points")
        cuts = np.flatnonzero(points[:, 2] != 0) + 1
        cuts = cuts[cuts < n]
        xyt = np.column_stack([points[:, :2], t])
        strokes = np.split(xyt, cuts) if n else []
        return cls(strokes, label=label, id=id)

    @classmethod
    def from_xy(cls, strokes: Sequence[np.ndarray], label: str | None = None,
                id: str | None = None) -> "Ink":
        """Strokes of ``[k, 2]`` (or ``[k, 3]``) points; missing times get the nominal clock."""
        out, start = [], 0
        for s in strokes:
            s = np.asarray(s, dtype=np.float64)
            if s.size == 0:
                s = np.zeros((0, 3))
            elif s.ndim == 2 and s.shape[1] == 2:
                s = np.column_stack([s, nominal_times(len(s), start)])
            out.append(s)
            start += len(s)
        return cls(out, label=label, id=id)

    def with_strokes(self, strokes: list[np.ndarray]) -> "Ink":
        return Ink(strokes, label=self.label, id=self.id)

    def copy(self) -> "Ink":
        return Ink([s.copy() for s in self.strokes], label=self.label, id=self.id)

    def check(self, where: str | None = None, max_coord: float = MAX_COORD,
              max_points: int | None = None) -> "Ink":
        """Raise ``BadSampleError`` naming ``where`` if this ink is unusable (``InputTooLargeError``
        over ``max_points``, default :func:`max_ink_points`); return self."""
        where = where or self.name()
        if not self.strokes:
            raise BadSampleError(f"{where}: no strokes")
        check_num_points(self.num_points, where, max_points)
        for i, s in enumerate(self.strokes):
            if len(s) == 0:
                raise BadSampleError(f"{where}: stroke {i} is empty")
            if not np.isfinite(s).all():
                raise BadSampleError(f"{where}: stroke {i} has NaN or infinite values")
            if np.abs(s[:, :2]).max() > max_coord:
                raise BadSampleError(
                    f"{where}: stroke {i} has a coordinate beyond +-{max_coord:g}"
                )
        return self


def _as_stroke(s: np.ndarray) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 3))
    if a.ndim != 2 or a.shape[1] != 3:
        raise BadSampleError(f"stroke must be [k, 3] (x, y, t), got shape {a.shape}")
    return a


def nominal_times(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + start) * NOMINAL_DT_MS


class InkList(list):
    """A list of ``Ink`` plus the ``errors`` met while reading (empty in strict mode)."""

    def __init__(self, items: Iterable[Ink] = (), errors: Iterable[InkpackError] = ()) -> None:
        super().__init__(items)
        self.errors: list[InkpackError] = list(errors)


class Collector:
    """Applies the strict / lenient policy while a reader walks a file's samples."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.out = InkList()

    def add(self, make: Callable[[], Ink]) -> None:
        """Call ``make``; keep its ink, or raise / record its ``InkpackError``."""
        try:
            ink = make()
        except InkpackError as e:
            self.error(e)
            return
        self.out.append(ink)

    def error(self, e: InkpackError) -> None:
        if self.strict:
            raise e
        self.out.errors.append(e)


def read_many(reader: Callable[..., Ink], paths: Iterable, strict: bool = True) -> InkList:
    """Apply a one-sample-per-file reader to many files under the same policy."""
    col = Collector(strict)
    for p in paths:
        col.add(lambda p=p: reader(p))
    return col.out
