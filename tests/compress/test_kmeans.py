"""k-means weight sharing: ≤ 2^b values, zeros kept, exact round-trip, expected file size."""

import numpy as np
import pytest
import torch
from torch import nn

from inkpack.compress.kmeans import (WeightSharing, _decode_positions, _encode_positions, kmeans_1d,
                                     load_into, load_shared, pack_bits, unpack_bits)
from inkpack.compress.prune import Pruner
from inkpack.errors import InkpackError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 32)
        self.fc = nn.Linear(32, 10)
        self.norm = nn.BatchNorm1d(10)

    def forward(self, x):
        y = self.fc(self.lstm(x)[0])
        return self.norm(y.flatten(0, 1))


def test_kmeans_1d_finds_separated_clusters():
    v = torch.cat([torch.full((50,), -1.0), torch.full((30,), 0.2), torch.full((20,), 2.0)])
    v = v + 0.01 * torch.randn(100, generator=torch.Generator().manual_seed(0))
    cent, idx = kmeans_1d(v, 3)  # linear init -1, 0.5, 2: Lloyd must move the middle one to 0.2
    assert torch.equal(torch.bincount(idx, minlength=3), torch.tensor([50, 30, 20]))
    means = torch.stack([v[:50].mean(), v[50:80].mean(), v[80:].mean()])
    torch.testing.assert_close(cent, means)


def test_kmeans_1d_uses_every_centroid_on_pruned_weights():
    # a pruned layer: two tails and nothing near zero; linear init leaves the middle centroids empty
    g = torch.Generator().manual_seed(0)
    w = torch.rand(20000, generator=g) * 2 - 1
    v = w[w.abs() > 0.8]
    cent, idx = kmeans_1d(v, 16)
    counts = torch.bincount(idx, minlength=16)
    assert int((counts > 0).sum()) == 16
    err = float(((v - cent[idx]) ** 2).mean())
    # 8 equal-width bins per tail of width 0.2: uniform quantization error (0.2/8)^2 / 12
    assert err == pytest.approx((0.2 / 8) ** 2 / 12, rel=0.25)
    few = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0])  # 3 distinct values, 4 centroids: no endless split
    cent, idx = kmeans_1d(few, 4)
    assert torch.equal(torch.sort(torch.unique(cent[idx])).values, torch.tensor([1.0, 2.0, 3.0]))


def test_bit_packing_and_position_codes_round_trip():
    rng = np.random.default_rng(0)
    for bits in range(1, 9):
        codes = rng.integers(0, 2 ** bits, 1001).astype(np.uint8)
        packed = pack_bits(codes, bits)
        assert packed.nbytes == -(-1001 * bits // 8)
        assert np.array_equal(unpack_bits(packed, bits, 1001), codes)
    for density, numel in [(0.9, 5000), (0.05, 5000), (0.002, 200000), (0.00001, 300000), (1.0, 64)]:
        mask = rng.random(numel) < density
        mask[-1] = True
        data, how = _encode_positions(mask)
        assert np.array_equal(_decode_positions(data, how, numel), np.flatnonzero(mask)), how
    # gaps longer than 255 use escapes in uint8, longer than 65535 in uint16
    mask = np.zeros(70000, bool)
    mask[[0, 300, 69999]] = True  # gaps 1, 300, 69699: u16 needs one escape, u8 274 of them
    data, how = _encode_positions(mask)
    assert how == "u16" and data.nbytes == 2 * (3 + 1)
    assert np.array_equal(_decode_positions(data, how, 70000), [0, 300, 69999])
    pos = [0] + list(range(600, 100000, 200))  # gap 600 = 255 + 255 + 90: two escapes
    mask = np.zeros(100000, bool)
    mask[pos] = True
    data, how = _encode_positions(mask)
    assert how == "u8" and data.nbytes == len(pos) + 2
    assert np.array_equal(_decode_positions(data, how, 100000), pos)


def test_sharing_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Net()
    pruner = Pruner(model, {"lstm.weight_*": 0.6, "fc.weight": 0.3}, steps=1)
    pruner.finish()
    zeros = {n: (p == 0).clone() for n, p in pruner.params.items()}
    ws = WeightSharing(model, bits={"lstm.*": 4, "fc.*": 3})
    assert set(ws.weights) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "fc.weight"}
    for name, count in ws.distinct_values().items():
        assert count <= 2 ** ws.bits[name]
        assert torch.equal(ws.weights[name] == 0, zeros[name])  # zeros stay zero, nothing else becomes 0
    model.eval()
    x = torch.randn(5, 2, 16)
    ref = model(x)
    report = ws.save(tmp_path / "m.npz", extra={"arch": "net"})
    fresh = Net().eval()
    assert load_into(fresh, tmp_path / "m.npz") == {"arch": "net"}
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    assert torch.equal(fresh(x), ref)
    assert report["bytes"] == (tmp_path / "m.npz").stat().st_size
    assert report["fp32_bytes"] == 4 * sum(t.numel() for t in model.state_dict().values()
                                           if t.is_floating_point()) + 8  # int64 num_batches_tracked


def test_raw_half_stores_biases_in_float16_and_loads_them_as_float32(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 300))
    ws = WeightSharing(model, bits=4)
    full = ws.save(tmp_path / "f.npz")
    bias = model[0].bias.detach().clone()
    half = ws.save(tmp_path / "h.npz", raw_half=True)
    assert half["bytes"] < full["bytes"]
    with np.load(tmp_path / "h.npz") as z, np.load(tmp_path / "f.npz") as zf:
        raw = [k for k in z.files if k.endswith("r")]
        assert [z[k].dtype for k in raw] == [np.float16] and z[raw[0]].size == 300
        assert zf[raw[0]].dtype == np.float32
    state, _ = load_shared(tmp_path / "h.npz")
    assert state["0.bias"].dtype == torch.float32
    assert torch.equal(state["0.bias"], bias.half().float()) and not torch.equal(state["0.bias"], bias)
    assert torch.equal(model[0].bias.detach(), state["0.bias"])  # the model computes what the file holds
    assert torch.equal(state["0.weight"], model[0].weight.detach())  # shared weights are untouched


def test_file_is_smaller_by_the_expected_factor(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(512, 512, bias=False)
    ws = WeightSharing(nn.Sequential(model), bits=4)  # dense: no position data at all
    report = ws.save(tmp_path / "d.npz")
    payload = 512 * 512 * 4 // 8 + 16 * 4
    assert payload <= report["bytes"] <= payload + 1500  # zip + .npy headers + json meta
    assert report["ratio"] == pytest.approx(8.0, rel=0.02)  # 32 bits -> 4 bits
    Pruner(nn.Sequential(model), 0.9, steps=1).finish()
    ws = WeightSharing(nn.Sequential(model), bits=4)
    report = ws.save(tmp_path / "s.npz")
    nnz = round(0.1 * 512 * 512)
    state, _ = load_shared(tmp_path / "s.npz")
    assert int((state["0.weight"] != 0).sum()) == nnz
    z = np.load(tmp_path / "s.npz")
    positions = z["0p"]
    assert positions.dtype == np.uint8 and positions.nbytes >= nnz  # one byte per kept weight (+escapes)
    payload = positions.nbytes + -(-nnz * 4 // 8) + 16 * 4
    # zlib then codes the gaps near their entropy: random 10% positions have geometric gaps of
    # (-0.9 log2 0.9 - 0.1 log2 0.1) / 0.1 = 4.69 bits, against 8 bits stored
    gap_bits = (-0.9 * np.log2(0.9) - 0.1 * np.log2(0.1)) / 0.1
    assert nnz * gap_bits / 8 < report["bytes"] < payload
    assert report["ratio"] > 512 * 512 * 4 / payload


def test_centroid_fine_tuning_keeps_sharing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    Pruner(model, 0.5, steps=1).finish()
    ws = WeightSharing(model, bits=2)
    # the centroid gradient is the sum of its weights' gradients
    model(torch.randn(32, 8)).pow(2).mean().backward()
    ws.sync_grads()
    w = ws.weights["0.weight"]
    idx, mask = ws.index["0.weight"], ws.masks["0.weight"]
    for k in range(4):
        expected = w.grad[mask][idx == k].sum()
        assert ws.centroids["0/weight"].grad[k] == pytest.approx(expected.item(), abs=1e-6)
    opt = torch.optim.SGD(ws.parameters() + ws.other_parameters(), lr=0.1)
    before = ws.centroids["0/weight"].detach().clone()
    for _ in range(3):
        opt.zero_grad()
        for c in ws.parameters():
            c.grad = None
        model(torch.randn(32, 8)).pow(2).mean().backward()
        ws.sync_grads()
        opt.step()
        ws.apply()
    assert not torch.equal(before, ws.centroids["0/weight"].detach())
    for name, count in ws.distinct_values().items():
        assert count <= 4
        assert int((ws.weights[name] != 0).sum()) == int(ws.masks[name].sum())


def test_bad_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InkpackError):
        load_shared(tmp_path / "x.npz")
    with pytest.raises(InkpackError):
        WeightSharing(nn.Linear(3, 3), bits=9)


class CnnBlstm(nn.Module):
    """A miniature CNN-DBLSTM (the shape of the seeds' models)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.rnn = nn.LSTM(16 * 4, 24, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(48, 40)

    def forward(self, x):
        f = self.cnn(x).flatten(1, 2).permute(2, 0, 1)  # [W, B, C*H]
        return self.fc(self.rnn(f)[0])


def test_pipeline_svd_tucker_adw_kmeans_round_trip(tmp_path):
    from inkpack.compress.lowrank import lowrank_linear, lowrank_lstm
    from inkpack.compress.tucker import tucker_decompose

    torch.manual_seed(0)
    model = CnnBlstm()
    tucker_decompose(model, ranks={"cnn.2": (6, 4)}, min_channels=4)
    lowrank_lstm(model, rank_ih=8, rank_hh=6)
    lowrank_linear(model, rank=10)
    Pruner(model, 0.5, steps=1).finish()
    ws = WeightSharing(model, bits=4)
    model.eval()
    x = torch.rand(2, 1, 4, 9)
    ref = model(x)
    ws.save(tmp_path / "c.npz", extra={"arch": "cnn-blstm"})
    fresh = CnnBlstm().eval()  # uncompressed architecture: the file says what to rebuild
    assert load_into(fresh, tmp_path / "c.npz") == {"arch": "cnn-blstm"}
    assert torch.equal(fresh(x), ref)
    with pytest.raises(InkpackError):
        load_into(Net(), tmp_path / "c.npz")
