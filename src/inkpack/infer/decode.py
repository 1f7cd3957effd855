"""Decoding: CTC log-probabilities of a batch → one :class:`Recognition` per line.

The text, one confidence per character (the highest probability of that character over the CTC
frames it was read at) and one position per character come from the greedy alignment. A
position is the ``[x0, x1)`` pixel range of the *input* image covered by those frames (frame
``f`` covers pixels ``[f * width_factor, (f + 1) * width_factor)`` of the resized line). With a
beam ``decoder`` the text is the decoder's; where it differs from greedy's, its characters'
confidences and positions come from the best CTC path that reads that text
(:func:`inkpack.decode.greedy.forced_alignment`).

Ink models: a character classifier's logits → the top classes with softmax probabilities
(:func:`char_recognition`); an ink line's CTC output → greedy text, confidences and, as
positions, the ``[x_min, x_max]`` of the input points read at each character's frames
(:func:`ink_line_recognition`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inkpack.decode.recognition import Recognition

__all__ = ["char_positions", "char_recognition", "ink_line_recognition", "recognitions", "texts"]


def char_positions(starts: Sequence[int], ends: Sequence[int], width_factor: float,
                   resized_width: int, source_width: int) -> list[tuple[float, float]]:
    """Frame spans ``[s, e]`` (inclusive) → pixel ranges ``[x0, x1)`` of the input image."""
    scale = source_width / max(1, resized_width)
    out = []
    for s, e in zip(starts, ends):
        x0 = min(s * width_factor, resized_width) * scale
        x1 = min((e + 1) * width_factor, resized_width) * scale
        out.append((math.floor(x0), int(min(source_width, math.ceil(x1)))))
    return out


def recognitions(log_probs: np.ndarray, lengths, items: Sequence, alphabet, decoder=None,
                 width_factor: int | None = None) -> list[Recognition]:
    """``log_probs [T, B, K]`` and ``lengths [B]`` of the prepared ``items`` (``.tensor``,
    ``.source_width``, ``.warnings``) → their :class:`Recognition` s, in order. ``width_factor``
    None (no fixed factor: MDLSTM): each line's width over its frame count."""
    out = []
    for b, p in enumerate(items):
        n = int(lengths[b])
        al = aligned(log_probs[:, b], n, decoder, alphabet)
        width = int(p.tensor.shape[-1])
        wf = width_factor or width / max(1, n)
        pos = char_positions(al.starts, al.ends, wf, width, p.source_width)
        out.append(Recognition(al.text(alphabet), [float(c) for c in al.confidences], pos,
                               warnings=list(getattr(p, "warnings", ()))))
    return out


def aligned(log_probs, n: int, decoder, alphabet):
    """The greedy alignment of one ``[T, K]`` output's first ``n`` frames, or with a beam
    ``decoder`` the alignment of its labels where they differ (no confidences or positions in the
    rare case that no path reads them); normalised once for all three."""
    from inkpack.decode.greedy import GreedyAlignment, forced_alignment, greedy_with_alignment, one_output

    lp = one_output(log_probs, n, "decoding")
    greedy = greedy_with_alignment(lp)
    if decoder is None:
        return greedy
    labels = decoder.decode_labels(lp, alphabet)
    if labels == greedy.labels:
        return greedy
    return forced_alignment(lp, labels) or GreedyAlignment(labels, [], [], [])


def texts(log_probs: np.ndarray, lengths, alphabet, decoder=None) -> list[str]:
    """Only the texts of ``log_probs [T, B, K]``: what :func:`recognitions` would read."""
    from inkpack.decode.greedy import greedy_with_alignment

    out = []
    for b, n in enumerate(int(n) for n in lengths):
        if decoder is not None:
            out.append(decoder.decode(log_probs[:n, b], alphabet))
        else:
            out.append(greedy_with_alignment(log_probs[:, b], n).text(alphabet))
    return out


def _label(alphabet, k: int) -> str:
    """Class ``k`` is alphabet label ``k`` (models are built with ``alphabet.num_classes``)."""
    from inkpack.errors import InkpackError

    try:
        return alphabet.decode([k]) if k > 0 else ""
    except InkpackError:
        return ""


def char_recognition(logits, alphabet, top_k: int = 5) -> Recognition:
    """One character's logits ``[K]`` (torch) → the ``top_k`` classes with softmax probabilities
    as ``candidates``; ``text`` the best one."""
    import torch

    p = logits.float().softmax(-1)
    top = torch.topk(p, min(top_k, p.shape[-1]))
    cands = [(_label(alphabet, int(i)), float(v)) for v, i in zip(top.values, top.indices)]
    cands = [c for c in cands if c[0]]
    text = cands[0][0] if cands else ""
    return Recognition(text, [cands[0][1]] if cands else [], [], cands)


def ink_line_recognition(logits, n: int, point_x: np.ndarray, alphabet, decoder=None) -> Recognition:
    """One ink line's CTC logits ``[T, K]`` (torch, ``n`` valid frames) → its :class:`Recognition`;
    ``point_x``: the input x of each feature row (the model reads ``len(point_x) / T`` points a frame)."""
    al = aligned(logits.float().numpy(), n, decoder, alphabet)
    rate = max(1, round(len(point_x) / max(1, logits.shape[0])))  # points per frame
    pos = []
    for s, e in zip(al.starts, al.ends):
        xs = point_x[s * rate : (e + 1) * rate]
        pos.append((float(xs.min()), float(xs.max())) if len(xs) else (0.0, 0.0))
    text = al.text(alphabet)
    conf = [float(c) for c in al.confidences]
    prob = float(np.prod(conf)) if conf else 1.0
    return Recognition(text, conf, pos, [(text, prob)])
