import numpy as np
import pytest
import torch

from inkpack.decode.greedy import collapse, greedy_decode, greedy_with_alignment, log_softmax
from inkpack.errors import InkpackError


def frames(path, k=4, hi=0.7):
    """Log-probs whose argmax per frame is ``path``; the winner has probability ``hi``."""
    p = np.full((len(path), k), (1 - hi) / (k - 1))
    p[np.arange(len(path)), path] = hi
    return np.log(p)


def test_collapse_merges_repeats_then_drops_blanks():
    assert collapse(np.array([1, 1, 0, 1, 2, 2, 0, 0, 3])) == [1, 1, 2, 3]
    assert collapse(np.array([0, 0])) == []
    assert collapse(np.array([], dtype=int)) == []


def test_greedy_single_and_batch_with_lengths():
    a = frames([1, 1, 0, 1, 2, 2])
    b = frames([3, 0, 3, 3, 2, 1])
    assert greedy_decode(a) == [[1, 1, 2]]
    batch = np.stack([a, b], axis=1)  # [T, B, K]
    assert greedy_decode(batch) == [[1, 1, 2], [3, 3, 2, 1]]
    # lengths cut the second item after frame 4: path 3 0 3 3 -> [3, 3]
    assert greedy_decode(torch.from_numpy(batch), torch.tensor([6, 4])) == [[1, 1, 2], [3, 3]]


def test_greedy_bad_input():
    with pytest.raises(InkpackError):
        greedy_decode(np.zeros(5))
    with pytest.raises(InkpackError):
        greedy_decode(np.zeros((5, 2, 4)), lengths=[6, 2])


def test_alignment_confidence_and_frames():
    # frame argmax: 0 2 2 0 1 1 1 0 ; char "2" spans frames 1-2, char "1" spans 4-6
    p = np.array([
        [0.9, 0.05, 0.05],
        [0.2, 0.1, 0.7],
        [0.1, 0.1, 0.8],
        [0.6, 0.2, 0.2],
        [0.3, 0.6, 0.1],
        [0.05, 0.9, 0.05],
        [0.4, 0.5, 0.1],
        [0.9, 0.05, 0.05],
    ])
    al = greedy_with_alignment(np.log(p))
    assert al.labels == [2, 1]
    assert al.confidences == pytest.approx([0.8, 0.9])
    assert al.starts == [1, 4] and al.ends == [2, 6]
    # raw (unnormalised) logits give the same result: they are log-softmaxed first
    al2 = greedy_with_alignment(torch.from_numpy(np.log(p) + 3.0))
    assert al2.confidences == pytest.approx([0.8, 0.9])
    # length cuts the output
    assert greedy_with_alignment(np.log(p), length=5).labels == [2, 1]
    assert greedy_with_alignment(np.log(p), length=5).ends == [2, 4]


def test_log_softmax_normalises():
    x = np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_allclose(np.exp(log_softmax(x)).sum(-1), 1.0)
    np.testing.assert_allclose(log_softmax(log_softmax(x)), log_softmax(x), atol=1e-12)
