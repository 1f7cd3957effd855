"""Stroke-order and stroke-direction perturbations of an ink (issue 25).

People do not all write a character in its reference stroke order: neighbouring strokes are
swapped, a stroke is drawn from its other end, and fluent writers join consecutive strokes
without lifting the pen. These functions apply such habits to any :class:`Ink`, for a
validation that measures how much a recognizer depends on the reference order, and for
training-time augmentation:

* :func:`swap_strokes`: each neighbouring pair ``(k, k + 1)`` is swapped with probability
  ``rate`` (pairs do not overlap: after a swap the scan goes on at ``k + 2``);
* :func:`reverse_strokes`: each stroke is drawn backwards with probability ``rate``;
* :func:`join_strokes`: each pen lift is replaced, with probability ``rate``, by a pen-down
  straight connection to the next stroke's start (points at the strokes' own spacing);
* :func:`permute_strokes`: a uniformly random stroke order (the worst case, not a habit);
* :func:`perturb_order`: reversal, then swaps, then (optionally) a full permutation, then
  joins, at the rates of a ``PerturbConfig``.

Timing stays consistent: a moved stroke keeps its own duration profile and the pen-up gaps
keep their positions in the sequence, a reversed stroke keeps its duration (its time steps
reversed), a connector spends the pen-up time it replaces. Times therefore stay
non-decreasing, and the ink's points and labels are otherwise untouched. Every random choice
comes from the ``numpy.random.Generator`` passed in.

Default rates (``PerturbConfig()``): 5% per neighbouring pair swapped, 3% per stroke reversed,
10% per pen lift joined: a 10-stroke character is written in a non-reference order about a
third of the time and is joined somewhere about 60% of the time, a moderate share for
unconstrained writers (assumed, not measured on real handwriting here).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from inkpack.data.ink import Ink
from inkpack.errors import ConfigError


@dataclass
class PerturbConfig:
    swap: float = 0.05  # per neighbouring stroke pair
    reverse: float = 0.03  # per stroke
    join: float = 0.10  # per pen lift
    permute: bool = False  # a uniformly random stroke order (after the above)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "perturbation") -> "PerturbConfig":
        """From a mapping of overrides; unknown keys and rates outside [0, 1] are a ``ConfigError``."""
        d = dict(d or {})
        bad = set(d) - {f.name for f in fields(cls)}
        if bad:
            raise ConfigError(f"{where}: unknown keys {sorted(map(str, bad))} (swap, reverse, join, permute)")
        cfg = cls(**d)
        for name in ("swap", "reverse", "join"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{where}: {name} must be a rate in [0, 1], got {v!r}")
            setattr(cfg, name, float(v))
        if not isinstance(cfg.permute, bool):
            raise ConfigError(f"{where}: permute must be true or false, got {cfg.permute!r}")
        return cfg

    def active(self) -> bool:
        return bool(self.swap or self.reverse or self.join or self.permute)


def _retime(strokes: list[np.ndarray], order: list[int]) -> list[np.ndarray]:
    """``strokes`` in ``order``, each keeping its duration profile, the gaps keeping their slots."""
    t0 = [float(s[0, 2]) for s in strokes]
    t1 = [float(s[-1, 2]) for s in strokes]
    gaps = [max(0.0, t0[k + 1] - t1[k]) for k in range(len(strokes) - 1)] + [0.0]
    out, t = [], t0[0]
    for pos, k in enumerate(order):
        s = strokes[k].copy()
        s[:, 2] = s[:, 2] - t0[k] + t
        out.append(s)
        t = float(s[-1, 2]) + gaps[pos]
    return out


def swap_strokes(ink: Ink, rate: float, rng: np.random.Generator) -> Ink:
    """Swap neighbouring strokes, each pair with probability ``rate`` (non-overlapping pairs)."""
    n = ink.num_strokes
    order, k = list(range(n)), 0
    draws = rng.random(max(0, n - 1))
    while k < n - 1:
        if draws[k] < rate:
            order[k], order[k + 1] = order[k + 1], order[k]
            k += 2
        else:
            k += 1
    return ink.with_strokes(_retime(ink.strokes, order)) if n > 1 else ink.copy()


def permute_strokes(ink: Ink, rng: np.random.Generator) -> Ink:
    """A uniformly random stroke order."""
    order = rng.permutation(ink.num_strokes).tolist()
    return ink.with_strokes(_retime(ink.strokes, order)) if ink.num_strokes > 1 else ink.copy()


def reverse_strokes(ink: Ink, rate: float, rng: np.random.Generator) -> Ink:
    """Draw each stroke backwards with probability ``rate`` (same start time and duration)."""
    out = []
    for s, u in zip(ink.strokes, rng.random(ink.num_strokes)):
        s = s.copy()
        if u < rate and len(s) > 1:
            t = s[:, 2]
            s = s[::-1].copy()
            s[:, 2] = t[0] + (t[-1] - t[::-1])
        out.append(s)
    return ink.with_strokes(out)


def _connector(a: np.ndarray, b: np.ndarray, step: float, t_a: float, t_b: float) -> np.ndarray:
    """Points strictly between ``a`` and ``b`` about ``step`` apart, timed over ``(t_a, t_b)``."""
    dist = float(np.hypot(*(b - a)))
    n = int(dist / step) if step > 0 else 0
    if n < 1:
        return np.zeros((0, 3))
    u = np.arange(1, n + 1) / (n + 1)
    xy = a + u[:, None] * (b - a)
    t = t_a + u * max(0.0, t_b - t_a)
    return np.column_stack([xy, t])


def join_strokes(ink: Ink, rate: float, rng: np.random.Generator) -> Ink:
    """Replace each pen lift, with probability ``rate``, by a straight pen-down connection."""
    if ink.num_strokes < 2:
        return ink.copy()
    steps = [np.hypot(*np.diff(s[:, :2], axis=0).T) for s in ink.strokes if len(s) > 1]
    step = float(np.median(np.concatenate(steps))) if steps else 0.0
    out = [ink.strokes[0].copy()]
    for s, u in zip(ink.strokes[1:], rng.random(ink.num_strokes - 1)):
        if u < rate:
            prev = out[-1]
            link = _connector(prev[-1, :2], s[0, :2], step, float(prev[-1, 2]), float(s[0, 2]))
            out[-1] = np.concatenate([prev, link, s])
        else:
            out.append(s.copy())
    return ink.with_strokes(out)


def perturb_order(ink: Ink, rng: np.random.Generator, cfg: PerturbConfig | None = None) -> Ink:
    """Reverse, swap, join at ``cfg``'s rates, then permute when ``cfg.permute``."""
    cfg = cfg or PerturbConfig()
    out = ink
    if cfg.reverse:
        out = reverse_strokes(out, cfg.reverse, rng)
    if cfg.swap:
        out = swap_strokes(out, cfg.swap, rng)
    if cfg.permute:
        out = permute_strokes(out, rng)
    if cfg.join:
        out = join_strokes(out, cfg.join, rng)
    return out
