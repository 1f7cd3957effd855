"""Tucker-2: exact at full rank, expected parameter counts at reduced rank, rank selection."""

import pytest
import torch
from torch import nn

from inkpack.compress.tucker import TuckerConv2d, evbmf_rank, tucker_decompose, tucker_ranks
from inkpack.errors import InkpackError


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),   # skipped: 1 input channel < min_channels
        nn.ReLU(),
        nn.Conv2d(16, 24, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(24, 32, 3, stride=2, padding=2, dilation=2, bias=False),
        nn.Conv2d(32, 8, 1),              # 1x1: never decomposed
    )


def test_full_rank_reproduces_outputs():
    net = _net()
    x = torch.randn(2, 1, 15, 17)
    ref = net(x)
    changes = tucker_decompose(net, energy=1.0, min_channels=4, require_gain=False)
    assert [c.name for c in changes if "ranks" in c.detail] == ["2", "4"]
    assert isinstance(net[2], TuckerConv2d) and isinstance(net[4], TuckerConv2d)
    assert type(net[0]) is nn.Conv2d and type(net[5]) is nn.Conv2d
    assert net[4][1].stride == (2, 2) and net[4][1].dilation == (2, 2) and net[4][2].bias is None
    torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-4)


def test_reduced_ranks_give_expected_parameter_count():
    net = _net()
    before = sum(p.numel() for p in net.parameters())
    tucker_decompose(net, ranks={"2": (6, 5), "4": (7, 4)})
    after = sum(p.numel() for p in net.parameters())
    # conv2: 16*24*9 + 24 -> 16*5 + 5*6*9 + 6*24 + 24;  conv4: 24*32*9 -> 24*4 + 4*7*9 + 7*32
    removed = (16 * 24 * 9 + 24) - (16 * 5 + 5 * 6 * 9 + 6 * 24 + 24) + 24 * 32 * 9 - (24 * 4 + 4 * 7 * 9 + 7 * 32)
    assert before - after == removed
    assert net[2].ranks == (6, 5) and net[4].ranks == (7, 4)
    assert net(torch.randn(1, 1, 9, 9)).shape == (1, 8, 5, 5)


def test_energy_ranks_follow_the_spectrum_and_skip_list():
    torch.manual_seed(1)
    # a kernel of exact multilinear rank (3, 2): the unfoldings have ranks 3 and 2
    core, u_out, u_in = torch.randn(3, 2, 3, 3), torch.randn(20, 3), torch.randn(18, 2)
    w = torch.einsum("oa,abhw,ib->oihw", u_out, core, u_in)
    assert tucker_ranks(w, energy=0.999999) == (3, 2)
    assert tucker_ranks(w + 1e-3 * torch.randn_like(w), method="vbmf") == (3, 2)
    conv = nn.Sequential(nn.Conv2d(18, 20, 3, padding=1), nn.Conv2d(20, 20, 3))
    with torch.no_grad():
        conv[0].weight.copy_(w)
    x = torch.randn(1, 18, 8, 8)
    ref = conv[0](x)
    changes = tucker_decompose(conv, energy=0.999999, skip=["1"])
    assert type(conv[1]) is nn.Conv2d and len(changes) == 1
    assert conv[0].ranks == (3, 2)
    torch.testing.assert_close(conv[0](x), ref, atol=1e-4, rtol=1e-4)
    # running again leaves decomposed convs alone
    assert tucker_decompose(conv, energy=0.5, skip=["1"]) == []


def test_evbmf_recovers_rank_of_noisy_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    for L, M, r in [(30, 40, 8), (64, 576, 12), (100, 50, 5)]:
        y = torch.randn(L, r, generator=g) @ torch.randn(r, M, generator=g)
        y += 0.1 * torch.randn(L, M, generator=g)
        assert evbmf_rank(y) == r
    assert evbmf_rank(torch.randn(40, 60, generator=g)) == 1  # pure noise: nothing above threshold


def test_bad_method_raises():
    with pytest.raises(InkpackError):
        tucker_ranks(torch.randn(4, 4, 3, 3), method="nope")
