"""Online recognizers: the seed 001 character model and the BLSTM-CTC line model."""

from __future__ import annotations

import math

import pytest
import torch

from inkpack.errors import InkpackError
from inkpack.models import REGISTRY, build_model


def lstm_params(n_in: int, h: int) -> int:
    return 4 * (h * (n_in + h) + 2 * h)  # torch keeps two bias vectors per gate set


def padded(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, lengths


def test_registered_with_input_kinds():
    assert REGISTRY["lstm-char"].input_kind == "char"
    assert REGISTRY["online-blstm"].input_kind == "ink"


def test_lstm_char_has_the_seed_architecture():
    m = build_model("lstm-char", 3755)
    n = sum(p.numel() for p in m.parameters())
    want = (lstm_params(6, 100) + lstm_params(100, 512)
            + 512 * 512 + 512 + 512 * 3755 + 3755)
    assert n == want  # 3,489,643: LSTM2, FC1 and FC2 hold most of it, as in the seed


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_lstm_char_padding_does_not_change_outputs(pool):
    torch.manual_seed(0)
    m = build_model("lstm-char", 7, hidden1=8, hidden2=16, fc=12, pool=pool).eval()
    seqs = [torch.randn(n, 6) for n in (5, 11, 1)]
    x, lengths = padded(seqs)
    x[0, 5:] = 9.0  # garbage in the padding must not matter
    with torch.no_grad():
        out = m(x, lengths)
        assert out.shape == (3, 7)
        for i, s in enumerate(seqs):
            torch.testing.assert_close(out[i], m(s[None])[0], atol=1e-5, rtol=1e-5)


def test_lstm_char_pooling_definitions():
    torch.manual_seed(1)
    m = build_model("lstm-char", 4, hidden1=8, hidden2=16, fc=12, pool="mean").eval()
    x = torch.randn(1, 9, 6)
    with torch.no_grad():
        h, _ = m.lstm2(m.lstm1(x)[0])
        want_mean = m.fc2(torch.relu(m.fc1(h[:, :6].mean(1))))
        torch.testing.assert_close(m(x, torch.tensor([6])), want_mean)
        m.pool = "last"
        want_last = m.fc2(torch.relu(m.fc1(h[:, 5])))
        torch.testing.assert_close(m(x, torch.tensor([6])), want_last)


@pytest.mark.parametrize("sub", [1, 3])
def test_online_blstm_shapes_and_padding(sub):
    torch.manual_seed(2)
    m = build_model("online-blstm", 9, hidden=8, layers=2, subsample=sub).eval()
    seqs = [torch.randn(n, 6) for n in (10, 4, 7)]
    x, lengths = padded(seqs)
    x[1, 4:] = 5.0
    with torch.no_grad():
        logits, out_len = m(x, lengths)
        assert logits.shape == (math.ceil(10 / sub), 3, 9)
        assert out_len.tolist() == [math.ceil(n / sub) for n in (10, 4, 7)]
        for i, s in enumerate(seqs):
            alone, n = m(s[None], torch.tensor([len(s)]))
            k = int(n)
            torch.testing.assert_close(logits[:k, i], alone[:k, 0], atol=1e-5, rtol=1e-5)


def test_models_learn_a_toy_task():
    """A few optimiser steps separate two kinds of pen motion (rightward vs downward)."""
    torch.manual_seed(3)
    right = torch.zeros(8, 12, 6)
    right[..., 2] = 1.0
    down = torch.zeros(8, 12, 6)
    down[..., 3] = 1.0
    x = torch.cat([right, down]) + 0.05 * torch.randn(16, 12, 6)
    y = torch.tensor([0] * 8 + [1] * 8)
    lengths = torch.full((16,), 12)
    m = build_model("lstm-char", 2, hidden1=8, hidden2=16, fc=16)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x, lengths), y)
        loss.backward()
        opt.step()
    assert (m(x, lengths).argmax(1) == y).all()

    c = build_model("online-blstm", 3, hidden=8, layers=1, subsample=2)
    opt = torch.optim.Adam(c.parameters(), lr=0.02)
    targets = torch.where(y == 0, 1, 2)[:, None]

    def ctc() -> torch.Tensor:
        logits, out_len = c(x, lengths)
        return torch.nn.functional.ctc_loss(logits.log_softmax(-1), targets, out_len,
                                            torch.ones(16, dtype=torch.long))

    first = float(ctc().detach())
    for _ in range(40):
        opt.zero_grad()
        loss = ctc()
        loss.backward()
        opt.step()
    assert float(ctc().detach()) < 0.5 * first


def test_bad_inputs_are_clear_errors():
    m = build_model("lstm-char", 5, hidden1=4, hidden2=4, fc=4)
    with pytest.raises(InkpackError, match=r"\[B, T, 6\]"):
        m(torch.zeros(2, 3, 5))
    with pytest.raises(InkpackError, match="lengths"):
        m(torch.zeros(2, 3, 6), torch.tensor([0, 3]))
    with pytest.raises(InkpackError, match="subsample"):
        build_model("online-blstm", 5, subsample=0)
    with pytest.raises(InkpackError, match="pool"):
        build_model("lstm-char", 5, pool="max")
