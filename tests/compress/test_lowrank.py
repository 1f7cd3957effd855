"""LowRankLSTM / LowRankLinear: nn.LSTM parity at full rank, analytic parameter counts."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from inkpack.compress.lowrank import (
    LowRankLinear,
    LowRankLSTM,
    energy_rank,
    lowrank_layers,
    lowrank_linear,
    lowrank_lstm,
    parse_ranks,
)
from inkpack.errors import InkpackError


class Tagger(nn.Module):
    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.rnn = nn.LSTM(10, 12, num_layers=2, bidirectional=True, batch_first=batch_first)
        self.fc = nn.Linear(24, 30)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("ranks", [(1000, 1000), (None, None), (1000, None)])
def test_full_rank_matches_nn_lstm(batch_first, ranks):
    torch.manual_seed(0)
    lstm = nn.LSTM(10, 12, num_layers=2, bidirectional=True, batch_first=batch_first)
    low = LowRankLSTM.from_lstm(lstm, *ranks)
    x = torch.randn(3, 7, 10) if batch_first else torch.randn(7, 3, 10)
    hx = (torch.randn(4, 3, 12), torch.randn(4, 3, 12))
    for args in [(x,), (x, hx)]:
        (y0, (h0, c0)), (y1, (h1, c1)) = lstm(*args), low(*args)
        _close(y1, y0), _close(h1, h0), _close(c1, c0)
    packed = pack_padded_sequence(x, torch.tensor([5, 7, 2]), batch_first=batch_first, enforce_sorted=False)
    (p0, (h0, c0)), (p1, (h1, c1)) = lstm(packed, hx), low(packed, hx)
    assert torch.equal(p0.batch_sizes, p1.batch_sizes) and torch.equal(p0.sorted_indices, p1.sorted_indices)
    _close(p1.data, p0.data), _close(h1, h0), _close(c1, c0)


def test_unidirectional_single_layer_and_gradients():
    torch.manual_seed(1)
    lstm = nn.LSTM(6, 5)
    low = LowRankLSTM.from_lstm(lstm, 6, 5)
    x = torch.randn(4, 2, 6)
    _close(low(x)[0], lstm(x)[0])
    low(x)[0].sum().backward()
    assert all(p.grad is not None for p in low.parameters())


def test_reduced_ranks_parameter_count_and_separate_ranks():
    torch.manual_seed(0)
    model = Tagger()
    before = sum(p.numel() for p in model.parameters())
    changes = lowrank_lstm(model, rank_ih=4, rank_hh=3)
    assert isinstance(model.rnn, LowRankLSTM) and model.rnn.ranks() == [(4, 3)] * 4
    H = 12
    expected = 0
    for n_in in (10, 10, 24, 24):  # layer 0 fwd/bwd, layer 1 fwd/bwd
        expected += 4 * (n_in + 4 * H) + 3 * (H + 4 * H) + 4 * H  # U_i V_i, U_h V_h, merged bias
    assert changes[0].params_after == expected
    assert sum(p.numel() for p in model.parameters()) == before - changes[0].params_before + expected
    assert model(torch.randn(2, 5, 10)).shape == (2, 5, 30)


def test_reduced_rank_is_the_truncated_svd():
    torch.manual_seed(0)
    lstm = nn.LSTM(10, 12)
    low = LowRankLSTM.from_lstm(lstm, rank_ih=3, rank_hh=7)
    w = lstm.weight_hh_l0.detach().double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    best = (u[:, :7] * s[:7]) @ vh[:7]
    got = (low.cells[0].hh[1].weight @ low.cells[0].hh[0].weight).double()
    torch.testing.assert_close(got, best, atol=1e-5, rtol=1e-5)


def test_energy_ranks():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert [energy_rank(s, e) for e in (0.5, 9 / 14, 0.7, 13 / 14, 0.95, 1.0)] == [1, 1, 2, 2, 3, 3]
    torch.manual_seed(0)
    model = Tagger()
    lowrank_lstm(model, energy=(1.0, 0.5))
    for (r_ih, r_hh), n_in in zip(model.rnn.ranks(), (10, 10, 24, 24), strict=True):
        assert r_ih == min(n_in, 48) and 1 <= r_hh < 12
    with pytest.raises(InkpackError):
        lowrank_lstm(Tagger())


def test_linear_split():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 50), nn.ReLU(), nn.Linear(50, 3))
    x = torch.randn(4, 40)
    ref = model(x)
    changes = lowrank_linear(model, rank=40, require_gain=False)
    _close(model(x), ref)
    assert isinstance(model[0], LowRankLinear) and model[0].rank == 40 and model[2].rank == 3
    model = nn.Sequential(nn.Linear(40, 50), nn.ReLU(), nn.Linear(50, 3))
    changes = lowrank_linear(model, rank=8, skip=["2"])
    assert [c.params_after for c in changes] == [8 * (40 + 50) + 50]
    assert type(model[2]) is nn.Linear
    again = lowrank_linear(model, rank=8)  # the factors of layer 0 are not split again
    assert [c.name for c in again] == ["2"] and "kept" in again[0].detail


def test_proj_size_refused():
    with pytest.raises(InkpackError):
        LowRankLSTM.from_lstm(nn.LSTM(4, 8, proj_size=2), 2, 2)


def test_unbatched_input_and_structure_rebuild():
    from inkpack.compress.lowrank import rebuild, structure

    torch.manual_seed(0)
    for batch_first in (True, False):
        lstm = nn.LSTM(5, 7, bidirectional=True, batch_first=batch_first)
        low = LowRankLSTM.from_lstm(lstm, 5, 7)
        x, hx = torch.randn(6, 5), (torch.randn(2, 7), torch.randn(2, 7))
        (y0, (h0, c0)), (y1, (h1, c1)) = lstm(x, hx), low(x, hx)
        _close(y1, y0), _close(h1, h0), _close(c1, c0)
    model = Tagger()
    lowrank_lstm(model, energy=0.8)
    lowrank_linear(model, rank=5)
    spec = structure(model)
    assert set(spec) == {"rnn", "fc"} and spec["fc"] == {"kind": "lowrank_linear", "rank": 5}
    fresh = rebuild(Tagger(), spec)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 10)
    assert torch.equal(fresh(x), model(x))
    with pytest.raises(InkpackError):
        rebuild(Tagger(), {"fc": {"kind": "tucker", "ranks": [2, 2]}})


def test_replacement_keeps_eval_mode_and_dropout_only_in_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(6, 8, num_layers=3, dropout=0.5)).eval()
    x = torch.randn(5, 2, 6)
    ref = model(x)[0]
    lowrank_lstm(model, rank_ih=1000, rank_hh=1000)
    assert not model[0].training
    _close(model(x)[0], ref)  # eval: no dropout, deterministic
    model.train()
    a, b = model(x)[0], model(x)[0]
    assert not torch.equal(a, b)  # dropout between the layers in training, as nn.LSTM


def test_parse_ranks_reads_linear_and_lstm_ranks():
    assert parse_ranks("fc=4, rnn=3:-") == {"fc": 4, "rnn": (3, None)}
    for bad in ("fc", "fc=x", "rnn=1:2:3", ""):
        with pytest.raises(InkpackError):
            parse_ranks(bad)


def test_lowrank_layers_uses_the_given_ranks_per_layer():
    torch.manual_seed(0)
    model = Tagger()
    changes = lowrank_layers(model, {"fc": 5, "rnn": (4, None)})
    assert isinstance(model.fc, LowRankLinear) and model.fc.rank == 5
    assert model.fc[0].weight.shape == (5, 24) and model.fc[1].weight.shape == (30, 5)
    assert isinstance(model.rnn, LowRankLSTM) and model.rnn.ranks() == [(4, None)] * 4
    by_name = {c.name: c for c in changes}
    assert by_name["fc"].params_after == 5 * 24 + 5 * 30 + 30  # two factors, one bias
    assert model(torch.randn(2, 6, 10)).shape == (2, 6, 30)
    with pytest.raises(InkpackError, match="fc, rnn|rnn, fc"):
        lowrank_layers(Tagger(), {"nope": 3})
    with pytest.raises(InkpackError):
        lowrank_layers(Tagger(), {"fc": (3, 4)})  # a Linear takes one rank


def test_fused_path_matches_the_factored_loop_in_outputs_and_gradients():
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 9, num_layers=2, bidirectional=True)
    low = LowRankLSTM.from_lstm(lstm, rank_ih=3, rank_hh=4)
    assert low._dense_parameters() is not None  # plain fp32 factors: forward takes the fused call
    x = torch.randn(7, 3, 6)
    packed = pack_padded_sequence(x, torch.tensor([7, 4, 2]), enforce_sorted=False)
    for inp in (x, packed):
        grads = []
        for run in (low, low._loop):
            low.zero_grad()
            y, (h, c) = run(inp)
            data = y.data if hasattr(y, "batch_sizes") else y
            (data.square().sum() + h.sum() + c.sum()).backward()
            grads.append((data.detach(), [p.grad.clone() for p in low.parameters()]))
        (y_f, g_f), (y_l, g_l) = grads
        _close(y_f, y_l)
        for a, b in zip(g_f, g_l, strict=True):  # the factors U and V get the loop's gradients
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_factored_flops_are_counted_not_the_dense_rebuild():
    from inkpack.compress.report import count_flops

    lstm = nn.LSTM(10, 20)
    low = LowRankLSTM.from_lstm(lstm, rank_ih=4, rank_hh=5)
    x = torch.randn(8, 1, 10)
    # per step: ih 4·(10 + 80), hh 5·(20 + 80) multiply-adds, 2 FLOPs each, 8 steps
    assert count_flops(low, x) == 2 * 8 * (4 * 90 + 5 * 100)
    assert count_flops(lstm, x) == 2 * 8 * 80 * 30
