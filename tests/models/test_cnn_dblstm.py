import math

import pytest
import torch

from inkpack.models import REGISTRY, build_model
from inkpack.errors import InkpackError


@pytest.mark.parametrize("arch", ["darknet-dblstm", "vgg-dblstm"])
def test_output_lengths_follow_true_widths(arch):
    m = build_model(arch, 10, height=32).eval()
    widths = torch.tensor([37, 64, 5])
    x = torch.zeros(3, 1, 32, 64)
    logits, lengths = m(x, torch.full((3,), 32), widths)
    assert logits.shape == (16, 3, 10)
    assert lengths.tolist() == [math.ceil(w / 4) for w in widths.tolist()]


def test_padded_batch_equals_each_example_alone():
    torch.manual_seed(0)
    m = build_model("darknet-dblstm", 12, height=32).eval()
    xs = [torch.rand(1, 32, w) for w in (40, 73, 18)]
    batch = torch.zeros(3, 1, 32, 73)
    for i, x in enumerate(xs):
        batch[i, :, :, : x.shape[-1]] = x
    widths = torch.tensor([x.shape[-1] for x in xs])
    with torch.no_grad():
        lb, lens = m(batch, None, widths)
        for i, x in enumerate(xs):
            la, n = m(x[None], None, widths[i : i + 1])
            assert int(n) == int(lens[i])
            # the conv receptive field sees the zero padding only beyond the example's
            # last frames' neighbourhood; widths here are multiples-of-4-safe except the tail
            diff = (lb[: n, i] - la[:, 0]).abs()
            assert diff[: max(1, int(n) - 2)].max() < 1e-4


def test_parameter_counts_match_the_seeds_scale():
    teacher = sum(p.numel() for p in build_model("vgg-dblstm", 85).parameters())
    student = sum(p.numel() for p in build_model("darknet-dblstm", 85).parameters())
    assert 7e6 < teacher < 9e6  # "about 8M parameters like the seed's"
    assert student < teacher / 5
    assert {"vgg-dblstm", "darknet-dblstm"} <= set(REGISTRY)


def test_wrong_height_is_a_clear_error():
    m = build_model("darknet-dblstm", 5, height=32)
    with pytest.raises(InkpackError, match="height 32"):
        m(torch.zeros(1, 1, 48, 64))


def test_width_scales_the_darknet_convs_only():
    from inkpack.models.cnn_dblstm import DARKNET_CFG

    full = build_model("darknet-dblstm", 10, height=32)
    half = build_model("darknet-dblstm", 10, height=32, width=0.5)
    convs = lambda m: [c.out_channels for c in m.cnn.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs(full) == [item[1] for item in DARKNET_CFG if item[0] == "c"]
    assert convs(half) == [c // 2 for c in convs(full)]
    assert half.lstm.hidden_size == full.lstm.hidden_size and half.proj.out_features == full.proj.out_features
    assert half.output_lengths(torch.tensor([37])).item() == full.output_lengths(torch.tensor([37])).item()
    with pytest.raises(InkpackError):
        build_model("darknet-dblstm", 10, width=0)
