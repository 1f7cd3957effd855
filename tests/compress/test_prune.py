"""ADW pruner: exact per-layer sparsity, cubic schedule, masks survive optimizer steps."""

import pytest
import torch
from torch import nn

from inkpack.compress.lowrank import LowRankLSTM
from inkpack.compress.prune import Pruner, schedule_fraction
from inkpack.errors import InkpackError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def _train(model, pruner, opt, steps, log=None):
    for _ in range(steps):
        x = torch.randn(4, 6, 8)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()
        if log is not None:
            log.append({n: (p.detach() == 0).clone() for n, p in pruner.params.items()})


def test_schedule():
    assert schedule_fraction(0, 10) == 0.0 and schedule_fraction(10, 10) == 1.0
    assert schedule_fraction(5, 10) == pytest.approx(1 - 0.5 ** 3)
    assert schedule_fraction(3, 10, "linear") == pytest.approx(0.3)
    assert schedule_fraction(20, 10, "linear") == 1.0
    with pytest.raises(InkpackError):
        schedule_fraction(1, 2, "exp")


def test_reaches_exact_per_layer_targets_and_keeps_masks():
    torch.manual_seed(0)
    model = Net()
    targets = {"lstm.weight_ih_l0": 0.5, "lstm.weight_hh_l0": 0.8, "fc.weight": 0.9}
    pruner = Pruner(model, targets, steps=8, schedule="cubic")
    assert set(pruner.params) == set(targets)  # conv and biases untouched
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # momentum would revive weights without masks
    log = []
    _train(model, pruner, opt, 8, log)
    for step, zeros in enumerate(log, 1):
        for name, z in zeros.items():
            n = z.numel()
            assert int(z.sum()) == round(targets[name] * schedule_fraction(step, 8) * n)
            if step > 1:  # once dropped, always dropped
                assert bool((log[step - 2][name] <= z).all())
    final = {n: z.clone() for n, z in log[-1].items()}
    _train(model, pruner, opt, 5)  # keep training past the schedule
    sp = pruner.sparsity()
    for name, target in targets.items():
        p = pruner.params[name]
        assert sp[name] == round(target * p.numel()) / p.numel()
        assert torch.equal(p.detach() == 0, final[name])
    assert (model.conv.weight != 0).all()
    total = sum(round(t * pruner.params[n].numel()) for n, t in targets.items())
    assert sp["total"] == pytest.approx(total / sum(p.numel() for p in pruner.params.values()))


def test_drops_the_smallest_magnitudes_of_each_layer():
    lin = nn.Linear(4, 5, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(1, 21, dtype=torch.float32).view(5, 4) * torch.tensor([1, -1, 1, -1.0]))
        big = nn.Linear(4, 5, bias=False)
        big.weight.copy_(lin.weight * 100)
    model = nn.Sequential(lin, big)
    pruner = Pruner(model, 0.25, steps=1)
    pruner.finish()
    kept = lin.weight.detach().abs().flatten()
    assert sorted(kept[kept == 0].tolist()) == [0.0] * 5
    assert (lin.weight.detach().abs().flatten()[:5] == 0).all()  # |w| = 1..5 dropped in both layers,
    assert (big.weight.detach().abs().flatten()[:5] == 0).all()  # not a global threshold


def test_lowrank_lstm_factors_are_prunable():
    torch.manual_seed(0)
    low = LowRankLSTM.from_lstm(nn.LSTM(8, 6), 4, 3)
    pruner = Pruner(low, 0.5, steps=2, schedule="linear")
    pruner.step(), pruner.step()
    assert len(pruner.params) == 4
    for name, p in pruner.params.items():
        assert pruner.sparsity()[name] == round(0.5 * p.numel()) / p.numel()
    low(torch.randn(3, 2, 8))


def test_bad_targets():
    with pytest.raises(InkpackError):
        Pruner(Net(), {"nothing.*": 0.5}, steps=3)
    with pytest.raises(InkpackError):
        Pruner(Net(), 1.0, steps=3)
