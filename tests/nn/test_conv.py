import copy

import torch
from torch import nn

from inkpack.models.registry import build_model
from inkpack.nn.conv import fold_batchnorm


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so a wrong fold shows
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_fold_batchnorm_keeps_outputs_and_removes_every_bn():
    torch.manual_seed(0)
    model = build_model("darknet-dblstm", 12, height=32)
    _randomize_bn(model)
    model.eval()
    ref = copy.deepcopy(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(model) == n_bn == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(2, 1, 32, 70)
    widths = torch.tensor([70, 41])
    with torch.inference_mode():
        (a, la), (b, lb) = ref(x, None, widths), model(x, None, widths)
    assert torch.equal(la, lb)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_fold_batchnorm_leaves_training_models_and_tucker_sequentials_work():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 4, 3, padding=1)), nn.BatchNorm2d(4))
    _randomize_bn(seq)
    assert fold_batchnorm(seq) == 0  # still training: statistics would be frozen wrongly
    seq.eval()
    x = torch.rand(1, 3, 5, 6)
    before = seq(x)
    assert fold_batchnorm(seq) == 1
    assert isinstance(seq[1], nn.Identity)
    assert torch.allclose(seq(x), before, atol=1e-5)


def test_strided_max_pool_equals_max_pool_in_eval_on_odd_sizes():
    from inkpack.nn.conv import StridedMaxPool2d

    torch.manual_seed(0)
    for kernel in ((2, 2), (2, 1)):
        fast = StridedMaxPool2d(kernel, stride=kernel, ceil_mode=True).eval()
        ref = nn.MaxPool2d(kernel, stride=kernel, ceil_mode=True)
        for h, w in ((6, 9), (7, 8), (5, 5), (1, 1)):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(2, 3, h, w).contiguous(memory_format=fmt) - 3  # all-negative windows too
                y = fast(x)
                assert y.shape == ref(x).shape and torch.equal(y, ref(x))
    fast = StridedMaxPool2d((2, 2), stride=(2, 2), ceil_mode=True)  # training: the stock operator,
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)  # whose gradient goes to one element of a tie
    fast(x).sum().backward()
    assert x.grad.sum() == 1 and int((x.grad != 0).sum()) == 1
