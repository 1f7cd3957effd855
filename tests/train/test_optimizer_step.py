"""The one training step (`train.base.optimizer_step`) and the compression retraining on it:
hand-computed SGD steps, the clip, the gradient hook's place, and `retrain` / `finetune_ctc`
giving exactly what their own step loops gave before they shared it."""

import torch
from torch import nn

from inkpack.batching import pad_collate
from inkpack.compress.distill import finetune_ctc
from inkpack.compress.retrain import lr_factor, retrain
from inkpack.train.base import optimizer_step
from inkpack.train.ctc import ctc_loss, run_model
from inkpack.train.ema import Precision

torch.set_num_threads(1)


def sgd_param(values):
    p = nn.Parameter(torch.tensor(values))
    return p, torch.optim.SGD([p], lr=1.0)


def test_step_clears_old_gradients_and_clips_the_norm():
    p, opt = sgd_param([1.0, 1.0])
    p.grad = torch.tensor([100.0, 100.0])  # left from elsewhere: must not add up
    optimizer_step((p * torch.tensor([3.0, 4.0])).sum(), opt, [p], clip=1.0)
    # gradient (3, 4), norm 5, clipped to norm 1: (0.6, 0.8)
    assert torch.allclose(p.detach(), torch.tensor([0.4, 0.2]))


def test_clip_zero_leaves_the_gradient_alone():
    p, opt = sgd_param([1.0, 1.0])
    optimizer_step((p * torch.tensor([3.0, 4.0])).sum(), opt, [p], clip=0.0)
    assert torch.equal(p.detach(), torch.tensor([-2.0, -3.0]))


def test_after_backward_changes_the_gradient_before_the_clip_and_after_step_sees_the_update():
    p, opt = sgd_param([1.0, 1.0, 1.0])
    seen = []

    def mask():
        p.grad[1] = 0.0

    optimizer_step((p * torch.tensor([3.0, 7.0, 4.0])).sum(), opt, [p], clip=1.0,
                   after_backward=mask, after_step=lambda: seen.append(p.detach().clone()))
    # masked gradient (3, 0, 4): norm 5, so the clip sees the mask (unmasked norm would be √74)
    want = torch.tensor([0.4, 1.0, 0.2])
    assert torch.allclose(p.detach(), want) and len(seen) == 1 and torch.allclose(seen[0], want)


def test_cpu_precision_step_with_hook_is_the_plain_step():
    p, opt = sgd_param([2.0])
    Precision(torch.device("cpu")).step((p * p).sum(), opt, [p], 10.0,
                                        after_backward=lambda: p.grad.mul_(0.5))
    assert torch.equal(p.detach(), torch.tensor([0.0]))  # 2 - 1 · (0.5 · 2·2)


class LinearTask:
    """A regression task in retrain's interface (batch by step, loss)."""

    def batch(self, step):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 3, generator=g)
        return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(8, generator=g)

    def loss(self, model, batch):
        x, y = batch
        return ((model(x).squeeze(-1) - y) ** 2).mean()


def old_retrain(model, task, steps, lr, mask, hold):
    """retrain's own loop before it used optimizer_step (the reference)."""
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, hold))
    for step in range(steps):
        loss = task.loss(model, task.batch(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mask()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()


def test_retrain_gives_exactly_its_former_loop():
    torch.manual_seed(0)
    a = nn.Linear(3, 1)
    b = nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    start = float(a.weight[0, 1].detach())
    keep = torch.tensor([[1.0, 0.0, 1.0]])
    old_retrain(a, LinearTask(), 12, 0.05, lambda: a.weight.grad.mul_(keep), hold=4)
    losses = retrain(b, LinearTask(), 12, lr=0.05, hold=4, after_backward=lambda: b.weight.grad.mul_(keep))
    assert len(losses) == 12 and losses[-1] < losses[0]
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)
    assert float(b.weight[0, 1].detach()) == start  # masked gradient: Adam never moves it


def test_finetune_ctc_gives_exactly_its_former_loop_and_clips_all_weights():
    from inkpack.models.cnn_dblstm import CNNDBLSTM

    torch.manual_seed(0)
    cfg = [("c", 4, 3), ("p", 2, 2), ("c", 4, 3), ("p", 2, 2)]
    a = CNNDBLSTM(7, cfg, height=16, feat_dim=6, lstm_hidden=5, lstm_layers=1, dropout=0.0)
    b = CNNDBLSTM(7, cfg, height=16, feat_dim=6, lstm_hidden=5, lstm_layers=1, dropout=0.0)
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(1)
    batch = pad_collate([torch.rand(1, 16, w, generator=g) for w in (40, 28)], [[1, 2, 3], [4, 5]])
    # reference: only the LSTM is optimised, the clip's norm counts every weight of the model
    opt = torch.optim.Adam(list(a.lstm.parameters()), lr=1e-2)
    a.train()
    for m in a.modules():  # fine-tuning keeps a trained model's BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    for _ in range(3):
        loss = ctc_loss(*run_model(a, batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5)
        opt.step()
    calls = []
    ft = finetune_ctc(b, [batch], 3, lr=1e-2, clip=0.5, params=list(b.lstm.parameters()),
                      after_step=lambda: calls.append(1))
    assert len(ft["losses"]) == 3 and len(calls) == 3
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)
