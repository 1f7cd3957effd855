"""masked_bilstm on a padded batch equals nn.LSTM on a PackedSequence: outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from inkpack.nn.blstm import flip_within, masked_bilstm, reversal_index


def test_reversal_index_reverses_each_prefix_and_is_its_own_inverse() -> None:
    t = torch.arange(5)[:, None]
    rev = reversal_index(t, torch.tensor([5, 3, 1]))
    assert rev.T.tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 3, 4], [0, 1, 2, 3, 4]]
    x = torch.randn(5, 3, 2)
    assert torch.equal(flip_within(flip_within(x, rev), rev), x)


@pytest.mark.parametrize("layers,seed", [(1, 0), (2, 1), (3, 2)])
def test_masked_bilstm_equals_packed_sequence(layers: int, seed: int) -> None:
    torch.manual_seed(seed)
    lstm = nn.LSTM(6, 5, num_layers=layers, bidirectional=True).double()
    lengths = torch.tensor([7, 2, 5, 1, 7])
    x = torch.randn(7, 5, 6, dtype=torch.float64)
    # padding holds garbage: it must not reach any real frame
    x = torch.where(torch.arange(7)[:, None, None] < lengths[None, :, None], x, 1e3)
    y = masked_bilstm(lstm, x, lengths)
    y.pow(2).sum().backward()
    g = [p.grad.clone() for p in lstm.parameters()]
    lstm.zero_grad()
    ref, _ = lstm(pack_padded_sequence(x, lengths, enforce_sorted=False))
    ref, _ = pad_packed_sequence(ref, total_length=7)
    ref.pow(2).sum().backward()
    assert (y - ref).abs().max().item() < 1e-12
    for a, b in zip(g, lstm.parameters()):
        assert (a - b.grad).abs().max().item() < 1e-10
    # the plain LSTM over the padded batch is not the same: the check can fail
    plain, _ = lstm(x)
    assert (plain - ref).abs().max().item() > 1e-3


def test_masked_bilstm_refuses_unidirectional() -> None:
    with pytest.raises(ValueError, match="bidirectional"):
        masked_bilstm(nn.LSTM(3, 2), torch.zeros(2, 1, 3), torch.tensor([2]))
