"""Split each global batch among ranks by cost, so that ranks finish a step together.

Data-parallel training waits, every step, for the slowest rank. With variable-size
examples, equal *counts* per rank (the seed's scatter) give unequal work: a rank that
gets the wide lines pads and computes far more. Here every rank computes the same
global batches (deterministic in ``(seed, epoch)``) and takes its own share of each,
the shares being chosen to balance a cost model:

* ``"padded"``: a sub-batch padded to its own largest example costs ``n * maxH * maxW``
  (not additive: the split keeps similar widths together, see :func:`split_by_cost`);
* ``"packed"``: a packed canvas costs about the sum of ``(h + 1) * (w + 1)`` (one
  separator row and column per example), so it is additive (the packer's real canvas
  for a share of a few examples is less regular: see ``benchmarks/distributed.py``);
* ``"ink"``: an ink sub-batch costs its number of points (additive).

Each example of a global batch goes to exactly one rank, and every rank gets at least
one example whenever the global batch has ``>= world_size`` examples (DDP needs a
backward pass on every rank each step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from inkpack.errors import InkpackError

Size = int | float | tuple[int, int]
MODES = ("padded", "packed", "ink", "count")


def _hw(size: Size, where: str) -> tuple[float, float]:
    """(h, w) of one example; a bare number is a length (ink padded along time: h = 1)."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise InkpackError(f"{where}: size must be (height, width), got {size!r}")
        h, w = size
    else:
        h, w = 1, size
    if not (h >= 0 and w >= 0):
        raise InkpackError(f"{where}: negative or NaN size {size!r}")
    return float(h), float(w)


def example_cost(size: Size, mode: str) -> float:
    """Additive cost of one example under ``mode`` (``padded`` counts its own area)."""
    h, w = _hw(size, "example_cost")
    if mode == "packed":
        return (h + 1) * (w + 1)
    if mode == "ink":
        return w
    if mode == "padded":
        return h * w
    if mode == "count":
        return 1.0
    raise InkpackError(f"cost mode must be one of {', '.join(MODES)}, got {mode!r}")


def batch_cost(sizes: Sequence[Size], mode: str) -> float:
    """Cost of one rank's sub-batch; ``padded`` = ``n * maxH * maxW``, others add up."""
    if not sizes:
        return 0.0
    if mode == "padded":
        hw = [_hw(s, "batch_cost") for s in sizes]
        return len(hw) * max(h for h, _ in hw) * max(w for _, w in hw)
    return float(sum(example_cost(s, mode) for s in sizes))


def imbalance(costs_per_rank: Sequence[float]) -> float:
    """``max / mean`` of the ranks' costs: 1.0 when no rank waits for another."""
    if not costs_per_rank:
        raise InkpackError("imbalance: no ranks")
    mean = sum(costs_per_rank) / len(costs_per_rank)
    return 1.0 if mean == 0 else max(costs_per_rank) / mean


def split_by_count(n: int, world_size: int) -> list[list[int]]:
    """Contiguous near-equal chunks of positions ``0..n-1`` (the seed's scatter)."""
    _check_world(world_size)
    q, r = divmod(n, world_size)
    out, start = [], 0
    for rank in range(world_size):
        size = q + (1 if rank < r else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def lpt(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Greedy longest-processing-time: largest first, each to the least-loaded rank.

    Ties go to the rank with fewer examples, then the lower rank, so a zero-cost
    example never lands on a busy rank while another is empty. Graham's bound: the
    largest load is at most ``(4/3 - 1/(3 R))`` times the optimum.
    """
    _check_world(world_size)
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    loads = [0.0] * world_size
    parts: list[list[int]] = [[] for _ in range(world_size)]
    for i in order:
        r = min(range(world_size), key=lambda k: (loads[k], len(parts[k]), k))
        parts[r].append(i)
        loads[r] += costs[i]
    return [sorted(p) for p in parts]


def split_by_cost(sizes: Sequence[Size], world_size: int, mode: str = "padded") -> list[list[int]]:
    """Positions of the global batch per rank, balancing :func:`batch_cost` under ``mode``.

    Additive modes use :func:`lpt`. ``padded`` cost depends on each sub-batch's widest
    and tallest member, so examples are sorted by width and cut into ``world_size``
    contiguous runs minimising the largest sub-batch cost, then the total (exact
    dynamic programme). With equal heights that is the optimum: exchanging a narrow
    member of a wider run with a wider member of a narrower run keeps every count and
    cannot raise either run's maximum, so some optimal split is contiguous in width
    order. For varying heights a height-sorted cut is tried too, and a local search
    of moves and swaps refines both. Ties break deterministically, so all ranks agree.
    """
    _check_world(world_size)
    if mode == "count":
        return split_by_count(len(sizes), world_size)
    if mode != "padded":
        return lpt([example_cost(s, mode) for s in sizes], world_size)
    hw = [_hw(s, f"example {i}") for i, s in enumerate(sizes)]
    n = len(hw)
    if n <= world_size:
        return [[i] for i in range(n)] + [[] for _ in range(world_size - n)]
    best: tuple[tuple[float, float], list[list[int]]] | None = None
    for key in (lambda i: (-hw[i][1], -hw[i][0], i), lambda i: (-hw[i][0], -hw[i][1], i)):
        order = sorted(range(n), key=key)
        parts = _contiguous_minmax([hw[i] for i in order], world_size)
        parts = _improve([[order[j] for j in p] for p in parts], hw)
        costs = [batch_cost([hw[i] for i in p], "padded") for p in parts]
        if best is None or (max(costs), sum(costs)) < best[0]:
            best = ((max(costs), sum(costs)), parts)
    return [sorted(p) for p in best[1]]


def _contiguous_minmax(hw: list[tuple[float, float]], k: int) -> list[list[int]]:
    """Cut ``hw`` (in the given order) into ``k`` non-empty runs minimising (max cost, total).

    Dynamic programme over cut points, vectorised over (start, end) pairs: O(k n^2).
    """
    n = len(hw)
    h = np.array([x[0] for x in hw], dtype=np.float64)
    w = np.array([x[1] for x in hw], dtype=np.float64)
    # cost[i, j] of the run i..j-1 (j > i); inf elsewhere
    cost = np.full((n + 1, n + 1), np.inf)
    for i in range(n):
        run = np.arange(1, n - i + 1)
        cost[i, i + 1 :] = run * np.maximum.accumulate(h[i:]) * np.maximum.accumulate(w[i:])
    best_max = np.full(n + 1, np.inf)
    best_sum = np.full(n + 1, np.inf)
    best_max[0] = best_sum[0] = 0.0
    back = np.zeros((k + 1, n + 1), dtype=np.int64)
    for p in range(1, k + 1):
        m = np.maximum(best_max[:, None], cost)  # [start, end]
        t = best_sum[:, None] + cost
        m_min = m.min(axis=0)
        t = np.where(m == m_min[None, :], t, np.inf)
        back[p] = t.argmin(axis=0)
        best_max, best_sum = m_min, t.min(axis=0)
    cuts, j = [], n
    for p in range(k, 0, -1):
        i = int(back[p][j])
        cuts.append(list(range(i, j)))
        j = i
    return cuts[::-1]


def _improve(parts: list[list[int]], hw: list[tuple[float, float]], rounds: int = 100) -> list[list[int]]:
    """Move or swap single examples off the most expensive rank while that lowers its cost.

    Every round prices all (a on the top rank) x (b elsewhere, or none) exchanges at once
    from each run's two largest heights/widths, and applies the one with the smallest
    (max, sum) of the two new costs. Each applied step lowers the sorted cost vector, so
    the search ends.
    """
    if len(parts) < 2:
        return parts
    h = np.array([x[0] for x in hw], dtype=np.float64)
    w = np.array([x[1] for x in hw], dtype=np.float64)
    for _ in range(rounds):
        n = np.array([len(p) for p in parts], dtype=np.float64)
        hmax = np.array([h[p].max() if p else 0.0 for p in parts])
        wmax = np.array([w[p].max() if p else 0.0 for p in parts])
        costs = n * hmax * wmax
        top = int(np.argmax(costs))  # first of the most expensive
        a = np.array(parts[top])
        b = np.array([i for r, p in enumerate(parts) if r != top for i in p], dtype=np.int64)
        rb = np.array([r for r, p in enumerate(parts) if r != top for _ in p], dtype=np.int64)
        others = np.array([r for r in range(len(parts)) if r != top], dtype=np.int64)
        h_wo_a, w_wo_a = _max_without(h, parts[top], a), _max_without(w, parts[top], a)
        h_wo_b = np.concatenate([_max_without(h, parts[r], np.array(parts[r])) for r in others])
        w_wo_b = np.concatenate([_max_without(w, parts[r], np.array(parts[r])) for r in others])
        # swaps a <-> b: rows a, columns b
        ct = n[top] * np.maximum(h_wo_a[:, None], h[b][None]) * np.maximum(w_wo_a[:, None], w[b][None])
        co = n[rb][None] * np.maximum(h_wo_b[None], h[a][:, None]) * np.maximum(w_wo_b[None], w[a][:, None])
        # moves a -> r: rows a, columns r (not allowed to empty the top rank)
        mt = np.broadcast_to(((n[top] - 1) * h_wo_a * w_wo_a)[:, None], (len(a), len(others)))
        mo = (n[others] + 1)[None] * np.maximum(hmax[others][None], h[a][:, None]) * np.maximum(
            wmax[others][None], w[a][:, None]
        )
        if len(a) == 1:
            mt = np.full_like(mo, np.inf)
        new_max = np.concatenate([np.maximum(ct, co), np.maximum(mt, mo)], axis=1)
        new_sum = np.concatenate([ct + co, mt + mo], axis=1)
        new_sum = np.where(new_max == new_max.min(), new_sum, np.inf)
        k = int(np.argmin(new_sum))  # row-major: deterministic tie-break
        if not new_max.flat[k] < costs[top]:
            break
        ia, col = divmod(k, new_max.shape[1])
        x = int(a[ia])
        if col < len(b):  # swap
            y, r = int(b[col]), int(rb[col])
            parts[top] = [i for i in parts[top] if i != x] + [y]
            parts[r] = [i for i in parts[r] if i != y] + [x]
        else:  # move
            r = int(others[col - len(b)])
            parts[top] = [i for i in parts[top] if i != x]
            parts[r] = parts[r] + [x]
    return parts


def _max_without(v: np.ndarray, part: list[int], items: np.ndarray) -> np.ndarray:
    """For each item of ``part``, the largest ``v`` over the rest of ``part`` (0 when none)."""
    vals = v[part]
    order = np.sort(vals)[::-1]
    first, second = order[0], (order[1] if len(order) > 1 else 0.0)
    return np.where(v[items] == first, second, first)


def _check_world(world_size: int) -> None:
    if world_size < 1:
        raise InkpackError(f"world_size must be >= 1, got {world_size}")


class DistributedBatchSampler(Sampler[list[int]]):
    """Batch sampler yielding this rank's share of each global batch (a DataLoader ``batch_sampler``).

    ``global_batches`` is a list of index lists, or a function ``epoch -> list`` (e.g.
    ``lambda e: bucket_batches(widths, 64, seed=seed + e)``) that must return the same
    on every rank. ``cost_fn(index)`` gives an example's size: ``(h, w)`` for
    ``padded``/``packed``, a point count for ``ink``; not needed for ``count``.
    Global batches with fewer than ``world_size`` examples are dropped (a rank with no
    example cannot take part in the all-reduce); :attr:`dropped` counts them.
    """

    def __init__(
        self,
        global_batches: Sequence[Sequence[int]] | Callable[[int], Sequence[Sequence[int]]],
        rank: int,
        world_size: int,
        cost_fn: Callable[[int], Size] | None = None,
        mode: str = "padded",
    ) -> None:
        _check_world(world_size)
        if not 0 <= rank < world_size:
            raise InkpackError(f"rank must be in [0, {world_size}), got {rank}")
        if mode not in MODES:
            raise InkpackError(f"cost mode must be one of {', '.join(MODES)}, got {mode!r}")
        if cost_fn is None and mode != "count":
            raise InkpackError(f"cost mode {mode!r} needs a cost_fn (index -> size)")
        self.global_batches = global_batches
        self.rank, self.world_size = rank, world_size
        self.cost_fn, self.mode = cost_fn, mode
        self.epoch = 0
        self._batches: list[list[int]] | None = None
        self.dropped = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's global batches (call on every rank before iterating)."""
        if epoch != self.epoch:
            self.epoch, self._batches = epoch, None

    def batches(self) -> list[list[int]]:
        """This epoch's global batches that are kept (``>= world_size`` examples)."""
        if self._batches is None:
            gb = self.global_batches
            every = [[int(i) for i in b] for b in (gb(self.epoch) if callable(gb) else gb)]
            self._batches = [b for b in every if len(b) >= self.world_size]
            self.dropped = len(every) - len(self._batches)
        return self._batches

    def shares(self, step: int) -> list[list[int]]:
        """All ranks' dataset indices for one step: ``shares(step)[rank]``."""
        batch = self.batches()[step]
        if self.mode == "count":
            parts = split_by_count(len(batch), self.world_size)
        else:
            parts = split_by_cost([self.cost_fn(i) for i in batch], self.world_size, self.mode)
        return [[batch[j] for j in p] for p in parts]

    def plan(self) -> list[list[list[int]]]:
        """Every step's shares (``plan()[step][rank]``), for inspection and tests."""
        return [self.shares(k) for k in range(len(self))]

    def global_counts(self) -> list[int]:
        """Examples per step over all ranks: the divisor of the loss (see ``distributed.scale_loss``)."""
        return [len(b) for b in self.batches()]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(len(self)):  # split lazily: no pause at the start of an epoch
            yield self.shares(step)[self.rank]

    def __len__(self) -> int:
        return len(self.batches())
