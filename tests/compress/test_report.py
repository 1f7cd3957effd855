"""FLOPs (incl. LSTM), parameter counts, sizes, latency and ratio helpers against hand counts."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from inkpack.compress.lowrank import lowrank_lstm
from inkpack.compress.report import (compare, count_flops, count_params, format_table, lstm_flops,
                                     measure_latency, size_on_disk_mb, summarize)


def test_linear_and_conv_flops():
    assert count_flops(nn.Linear(8, 4), torch.randn(3, 5, 8)) == 2 * 3 * 5 * 8 * 4
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    # output 4 x 4 x 5 (ceil of 7/2, 9/2), each output: 3*3*3 multiply-adds
    assert count_flops(conv, torch.randn(2, 3, 7, 9)) == 2 * 2 * 4 * 4 * 5 * 27


def test_lstm_flops_by_hand():
    lstm = nn.LSTM(10, 16, num_layers=2, bidirectional=True, batch_first=True)
    T, B = 7, 3
    layer0 = 2 * T * B * 4 * 16 * (10 + 16) * 2  # 2 flops/MAC, 2 directions
    layer1 = 2 * T * B * 4 * 16 * (32 + 16) * 2
    assert count_flops(lstm, torch.randn(B, T, 10)) == layer0 + layer1
    packed = pack_padded_sequence(torch.randn(B, T, 10), torch.tensor([7, 4, 2]), batch_first=True,
                                  enforce_sorted=False)
    assert count_flops(lstm, packed) == (layer0 + layer1) * 13 / 21  # only the 13 real steps
    proj = nn.LSTM(10, 16, proj_size=4)
    assert lstm_flops(proj, 1) == 2 * (4 * 16 * (10 + 4) + 16 * 4)


def test_model_with_lstm_and_lowrank_flops():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.lstm = nn.LSTM(2 * 8, 12)
            self.fc = nn.Linear(12, 5)

        def forward(self, x):
            f = self.conv(x).flatten(1, 2).permute(2, 0, 1)  # [W, B, C*H]
            return self.fc(self.lstm(f)[0])

    torch.manual_seed(0)
    net, x = Net(), torch.randn(1, 1, 8, 6)
    conv, fc = 2 * 2 * 8 * 6 * 9, 2 * 6 * 12 * 5
    lstm = 2 * 6 * 4 * 12 * (16 + 12)
    assert count_flops(net, x) == conv + lstm + fc
    lowrank_lstm(net, rank_ih=3, rank_hh=2)  # factors are Linears: flop_counter sees them
    low = 2 * 6 * (3 * (16 + 48) + 2 * (12 + 48))
    assert count_flops(net, x) == conv + low + fc
    assert count_params(net) == (2 * 9 + 2) + (3 * 64 + 2 * 60 + 48) + (12 * 5 + 5)


def test_params_size_latency_and_table(tmp_path):
    lin = nn.Linear(100, 50)
    assert count_params(lin) == 5050
    with torch.no_grad():
        lin.weight[:10].zero_()
    assert count_params(lin, nonzero=True) == 5050 - 1000
    mb = size_on_disk_mb(lin)
    assert 5050 * 4 / 1e6 < mb < 5050 * 4 / 1e6 + 0.01
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 2_000_000)
    assert size_on_disk_mb(path) == 2.0
    threads = torch.get_num_threads()
    lat = measure_latency(lin, torch.randn(4, 100), runs=5, warmup=1)
    assert lat["runs"] == 5 and 0 < lat["min_ms"] <= lat["median_ms"]
    assert torch.get_num_threads() == threads
    rows = {"base": summarize(lin, torch.randn(4, 100), latency_runs=3),
            "half": summarize(nn.Linear(100, 25), torch.randn(4, 100), latency_runs=3)}
    assert rows["base"]["gflops"] == pytest.approx(2 * 4 * 100 * 50 / 1e9)
    table = compare(rows, "base")
    assert table["half"]["Sr"] == pytest.approx(2.0)
    assert table["half"]["Cr"] == pytest.approx(rows["base"]["size_mb"] / rows["half"]["size_mb"])
    text = format_table(table)
    assert text.splitlines()[0].split()[:2] == ["model", "params"] and len(text.splitlines()) == 3


def test_measure_latencies_runs_models_in_turn_and_ranks_them():
    import time as _time

    from inkpack.compress.report import measure_latencies

    calls = []

    def slow(x):
        calls.append("slow")
        _time.sleep(0.004)
        return x

    def fast(x):
        calls.append("fast")
        return x

    lat = measure_latencies({"slow": slow, "fast": fast}, torch.zeros(1), runs=4, warmup=1)
    assert set(lat) == {"slow", "fast"} and lat["slow"] >= 4.0 > lat["fast"]
    # interleaved (warm-up round included), the order rotating so that no model always runs first
    assert calls == ["slow", "fast", "fast", "slow"] * 2 + ["slow", "fast"]
