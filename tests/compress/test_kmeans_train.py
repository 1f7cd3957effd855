"""Latent-weight k-means training: values stay shared, weights can change cluster, exact hand-over."""

import pytest
import torch
from torch import nn

from inkpack.compress.commands import parse_bits
from inkpack.compress.kmeans import WeightSharing, load_into
from inkpack.compress.kmeans_train import LatentSharing
from inkpack.errors import InkpackError


def _sign_problem():
    """Target weights ±1; the start has the right magnitude pattern but a quarter of the signs wrong."""
    g = torch.Generator().manual_seed(0)
    target = torch.where(torch.rand(8, 16, generator=g) < 0.5, -1.0, 1.0)
    flip = torch.zeros(8 * 16, dtype=torch.bool)
    flip[torch.randperm(8 * 16, generator=g)[: 8 * 16 // 4]] = True
    flip = flip.view(8, 16)
    start = torch.where(flip, -0.4 * target, 0.4 * target) + 0.05 * torch.randn(8, 16, generator=g)
    layer = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        layer.weight.copy_(start)
    x = torch.randn(256, 16, generator=g)
    return layer, target, flip, x, x @ target.T


def _train(layer, x, y, params, after_backward, after_step, steps=300, lr=0.05):
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = ((layer(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        after_backward()
        opt.step()
        after_step()


def test_latent_weights_change_cluster_where_centroid_tuning_cannot():
    layer, target, flip, x, y = _sign_problem()
    ls = LatentSharing(layer, bits=1, recluster_every=5)
    _train(layer, x, y, ls.parameters() + ls.other_parameters(), ls.after_backward, ls.after_step)
    w = layer.weight.detach()
    assert torch.unique(w).numel() <= 2
    assert torch.equal(torch.sign(w), target)  # every flipped sign was won back
    torch.testing.assert_close(w, target, atol=0.05, rtol=0)

    layer, target, flip, x, y = _sign_problem()  # the seed's centroid-only fine-tuning, same budget
    ws = WeightSharing(layer, bits=1)
    _train(layer, x, y, ws.parameters(), ws.sync_grads, ws.apply)
    wrong = torch.sign(layer.weight.detach()) != target
    assert torch.equal(wrong, flip)  # no weight can leave its cluster


def test_pruned_zeros_stay_zero_and_values_stay_shared(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    with torch.no_grad():
        model[0].weight[model[0].weight.abs() < 0.1] = 0.0
    zeros = model[0].weight.detach() == 0
    ls = LatentSharing(model, bits={"0.weight": 3, "*": 2}, recluster_every=3)
    x, y = torch.randn(64, 12), torch.randint(0, 4, (64,))
    opt = torch.optim.Adam(ls.parameters() + ls.other_parameters(), lr=1e-2)
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        ls.after_backward()
        opt.step()
        ls.after_step()
        w0, w2 = model[0].weight.detach(), model[2].weight.detach()
        assert torch.equal(w0 == 0, zeros)
        assert torch.unique(w0[w0 != 0]).numel() <= 8 and torch.unique(w2).numel() <= 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ws = ls.finish()
    for k, v in model.state_dict().items():  # exact hand-over: what was trained is what is shared
        assert torch.equal(v, before[k])
    assert ws.bits == {"0.weight": 3, "2.weight": 2}
    ws.save(tmp_path / "m.npz")
    fresh = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    load_into(fresh, tmp_path / "m.npz")
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_bad_settings_and_bits_parsing():
    with pytest.raises(InkpackError, match="bits"):
        LatentSharing(nn.Linear(3, 3), bits=9)
    with pytest.raises(InkpackError, match="recluster_every"):
        LatentSharing(nn.Linear(3, 3), bits=2, recluster_every=0)
    assert parse_bits("4") == 4
    assert parse_bits("fc2.weight=5, *=4") == {"fc2.weight": 5, "*": 4}
    with pytest.raises(InkpackError, match="--bits"):
        parse_bits("fc2=five")
