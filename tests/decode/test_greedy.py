import numpy as np
import pytest
import torch

from inkpack.decode.greedy import collapse, forced_alignment, greedy_decode, greedy_with_alignment, log_softmax
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


def _best_path_by_enumeration(lp, labels):
    """The most probable frame path collapsing to ``labels``, by trying every path."""
    import itertools

    best, best_p = None, -np.inf
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        if collapse(np.array(path)) == labels:
            p = lp[np.arange(len(path)), path].sum()
            if p > best_p:
                best, best_p = path, p
    return best


@pytest.mark.parametrize("seed", range(6))
def test_forced_alignment_is_the_best_path_reading_those_labels(seed):
    rng = np.random.default_rng(seed)
    lp = log_softmax(rng.normal(size=(6, 3)) * 2)
    labels = [[1, 2], [2, 2], [1], [2, 1, 2]][seed % 4]
    path = np.array(_best_path_by_enumeration(lp, labels))
    al = forced_alignment(lp, labels)
    assert al.labels == labels
    # each character's frames: the run of its label in the best path (first run i-th label)
    runs = [(i, path[i]) for i in range(len(path)) if path[i] != 0 and (i == 0 or path[i - 1] != path[i])]
    assert al.starts == [i for i, _ in runs]
    ends = []
    for i, c in runs:
        j = i
        while j + 1 < len(path) and path[j + 1] == c:
            j += 1
        ends.append(j)
    assert al.ends == ends
    assert al.confidences == pytest.approx([np.exp(lp[s:e + 1, c].max()) for (s, c), e in zip(runs, ends)])


@pytest.mark.parametrize("seed", range(4))
def test_forced_alignment_of_the_greedy_text_is_the_greedy_alignment(seed):
    lp = log_softmax(np.random.default_rng(seed).normal(size=(30, 6)) * 3)
    g = greedy_with_alignment(lp)
    f = forced_alignment(lp, g.labels)
    assert (f.labels, f.starts, f.ends) == (g.labels, g.starts, g.ends)
    assert f.confidences == pytest.approx(g.confidences)


def test_forced_alignment_needs_room_for_the_labels():
    lp = frames([1, 0, 1])
    assert forced_alignment(lp[:2], [1, 1]) is None  # a repeat needs a blank between: 3 frames
    al = forced_alignment(lp, [1, 1])
    assert (al.starts, al.ends) == ([0, 2], [0, 2])
    assert forced_alignment(lp, []).labels == []
    with pytest.raises(InkpackError, match="forced alignment"):
        forced_alignment(lp[0], [1])
