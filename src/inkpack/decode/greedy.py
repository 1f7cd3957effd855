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


def one_output(log_probs, length: int | None, what: str) -> np.ndarray:
    """One ``[T, K]`` output (its first ``length`` frames) as float64 log-probabilities."""
    a = as_numpy(log_probs)
    if a.ndim != 2:
        raise InkpackError(f"{what}: expected log-probs [T, K], got shape {a.shape}")
    if length is not None:
        a = a[: int(length)]
    return log_softmax(a.astype(np.float64))


def greedy_with_alignment(log_probs, length: int | None = None) -> GreedyAlignment:
    """Greedy decode of one ``[T, K]`` output keeping where each character was read and how surely.

    Inputs are normalised with log-softmax first, so raw logits are fine.
    """
    lp = one_output(log_probs, length, "greedy alignment")
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


def forced_alignment(log_probs, labels: list[int], length: int | None = None) -> GreedyAlignment | None:
    """Where the given ``labels`` (a beam search's text) are read in one ``[T, K]`` output: the
    most probable CTC path that collapses to them (Viterbi over the blank-interleaved labels),
    with per character the same confidence as :func:`greedy_with_alignment` (the highest
    probability of the label over its frames) and its first/last frame. None when ``T`` frames
    cannot hold the labels (each repeat needs a blank between). On the greedy labels it gives
    the greedy alignment, since the best path is then the greedy path."""
    lp = one_output(log_probs, length, "forced alignment")
    n_t, n = len(lp), len(labels)
    if n == 0:
        return GreedyAlignment([], [], [], [])
    ext = np.zeros(2 * n + 1, dtype=np.int64)  # blank, l1, blank, l2, ..., ln, blank
    ext[1::2] = labels
    if n_t < n + int(np.sum(ext[3::2] == ext[1:-2:2])):
        return None
    n_s = len(ext)
    skip = np.full(n_s, -np.inf)  # s-2 -> s allowed (0): a label unlike the label before it
    skip[3::2] = np.where(ext[3::2] != ext[1:-2:2], 0.0, -np.inf)
    emit = lp[:, ext]  # [T, S]
    # forward pass keeping every frame's scores; the best predecessor is found again while
    # tracing back (stay, then s-1, then s-2 on ties): a few array operations per frame
    scores = np.full((n_t, n_s), -np.inf)
    scores[0, :2] = emit[0, :2]
    one, two, top = np.full(n_s, -np.inf), np.full(n_s, -np.inf), np.empty(n_s)
    for t in range(1, n_t):
        prev = scores[t - 1]
        one[1:] = prev[:-1]  # one[0] and two[:2] stay -inf
        np.add(prev[:-2], skip[2:], out=two[2:])
        np.maximum(prev, one, out=top)
        np.maximum(top, two, out=top)
        np.add(top, emit[t], out=scores[t])
    last = scores[-1]
    s = n_s - 1 if last[-1] >= last[-2] else n_s - 2
    if not np.isfinite(last[s]):
        return None
    states = np.empty(n_t, dtype=np.int64)
    rows = scores.tolist()
    skips = skip.tolist()
    for t in range(n_t - 1, 0, -1):
        states[t] = s
        prev = rows[t - 1]
        best, move = prev[s], 0
        if s >= 1 and prev[s - 1] > best:
            best, move = prev[s - 1], 1
        if s >= 2 and prev[s - 2] + skips[s] > best:
            move = 2
        s -= move
    states[0] = s
    # the path is monotone and visits every label state: label i's frames are one run
    frames = np.flatnonzero(states % 2 == 1)
    lab = (states[frames] - 1) // 2
    run = np.flatnonzero(np.diff(lab)) + 1
    first = np.concatenate([[0], run])
    last_f = np.concatenate([run, [len(frames)]]) - 1
    conf = np.exp(np.maximum.reduceat(lp[frames, ext[states[frames]]], first)).tolist()
    starts, ends = frames[first].tolist(), frames[last_f].tolist()
    return GreedyAlignment(list(labels), conf, starts, ends)
