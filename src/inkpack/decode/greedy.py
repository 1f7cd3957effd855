"""Best-path (greedy) CTC decoding: the fast default, and per-character alignment for the API."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inkpack.errors import InkpackError


def as_numpy(x) -> np.ndarray:
    """Torch tensors (any device/dtype) or array-likes to a float numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Normalise over the last axis; a no-op (up to rounding) on inputs already in log-probs."""
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def collapse(path: np.ndarray) -> list[int]:
    """CTC collapse of one frame path: merge repeats, then drop blanks (label 0)."""
    path = np.asarray(path)
    if path.size == 0:
        return []
    keep = np.empty(path.shape, bool)
    keep[0] = True
    keep[1:] = path[1:] != path[:-1]
    return path[keep & (path != 0)].tolist()


def greedy_decode(log_probs, lengths=None) -> list[list[int]]:
    """Labels of the best path for each item of ``[T, B, K]`` (a ``[T, K]`` input is one item)."""
    a = as_numpy(log_probs)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise InkpackError(
            f"greedy decode: expected log-probs [T, B, K] or [T, K], got shape {a.shape}")
    best = a.argmax(axis=-1)  # [T, B]
    n_t, n_b = best.shape
    lens = [n_t] * n_b if lengths is None else [int(v) for v in as_numpy(lengths).reshape(-1)]
    if len(lens) != n_b or any(not 0 <= v <= n_t for v in lens):
        raise InkpackError(f"greedy decode: lengths {lens} do not fit T={n_t}, B={n_b}")
    return [collapse(best[: lens[b], b]) for b in range(n_b)]


@dataclass
class GreedyAlignment:
    """Greedy labels with, per character, its confidence and first/last frame (inclusive)."""

    labels: list[int]
    confidences: list[float]  # max over the character's frames of P(label | frame)
    starts: list[int]
    ends: list[int]

    def text(self, alphabet) -> str:
        return alphabet.decode(self.labels)


def greedy_with_alignment(log_probs, length: int | None = None) -> GreedyAlignment:
    """Greedy decode of one ``[T, K]`` output keeping where each character was read and how surely.

    Inputs are normalised with log-softmax first, so raw logits are fine.
    """
    a = as_numpy(log_probs)
    if a.ndim != 2:
        raise InkpackError(f"greedy alignment: expected log-probs [T, K], got shape {a.shape}")
    if length is not None:
        a = a[: int(length)]
    lp = log_softmax(a.astype(np.float64))
    best = lp.argmax(axis=-1)
    best_lp = lp[np.arange(len(best)), best]
    if best.size == 0:
        return GreedyAlignment([], [], [], [])
    # runs of equal labels: [run_start[i], run_end[i]) with label best[run_start[i]]
    change = np.flatnonzero(best[1:] != best[:-1]) + 1
    run_start = np.concatenate([[0], change])
    run_end = np.concatenate([change, [len(best)]])
    run_max = np.maximum.reduceat(best_lp, run_start)
    keep = best[run_start] != 0
    return GreedyAlignment(
        labels=best[run_start][keep].tolist(),
        confidences=np.exp(run_max[keep]).tolist(),
        starts=run_start[keep].tolist(),
        ends=(run_end[keep] - 1).tolist(),
    )
