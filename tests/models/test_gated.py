"""Gated-convolution architecture and the frame-rate / depth options: build, exact batching,
a few training steps with exact resume."""

import pytest
import torch

from conftest import make_tsv
from inkpack.errors import InkpackError
from inkpack.models import build_model
from inkpack.nn.gated import GatedConv2d
from inkpack.train.loop import TrainConfig, Trainer

WORDS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"]


def test_gate_multiplies_by_the_sigmoid_of_a_convolution():
    torch.manual_seed(0)
    g = GatedConv2d(3, 3)
    x = torch.randn(2, 3, 5, 7)
    ref = x * torch.sigmoid(torch.nn.functional.conv2d(x, g.weight, g.bias, padding=1))
    assert torch.allclose(g(x), ref, atol=1e-6)


def test_gated_model_counts_frames_and_is_exact_in_mixed_width_batches():
    torch.manual_seed(0)
    m = build_model("gated-dblstm", 10, height=32, feat_dim=32, lstm_hidden=16).eval()
    assert any(isinstance(x, GatedConv2d) for x in m.modules())
    widths = [40, 23, 9]
    imgs = torch.zeros(3, 1, 32, 40)
    for i, w in enumerate(widths):
        imgs[i, :, :, :w] = torch.rand(1, 32, w)
    with torch.no_grad():
        batched, lengths = m(imgs, None, torch.tensor(widths))
        assert lengths.tolist() == [10, 6, 3]  # ceil(w / 4)
        for i, w in enumerate(widths):
            alone, n = m(imgs[i : i + 1, :, :, :w], None, torch.tensor([w]))
            assert torch.allclose(batched[: n[0], i], alone[:, 0], atol=1e-5)


@pytest.mark.parametrize("factor, frames", [(2, 20), (4, 10), (8, 5)])
def test_pool_widths_sets_the_ctc_frame_rate(factor, frames):
    m = build_model("darknet-dblstm", 10, height=32, pool_widths=factor, feat_dim=32, lstm_hidden=16)
    assert m.width_factor == factor
    assert m.output_lengths(torch.tensor([40])).tolist() == [frames]


def test_pool_widths_must_be_a_power_of_two_within_the_pools():
    with pytest.raises(InkpackError, match="pool_widths"):
        build_model("darknet-dblstm", 10, height=32, pool_widths=3)
    with pytest.raises(InkpackError, match="pool_widths"):
        build_model("darknet-dblstm", 10, height=32, pool_widths=32)


def _cfg(root, out, steps, arch, options):
    tsv = make_tsv(root, WORDS)
    return TrainConfig(train=str(tsv), val=str(tsv), out=str(out), arch=arch, height=32, batch_size=3,
                       epochs=3, max_steps=steps, progress=False, ckpt_every=1000,
                       options={"feat_dim": 32, "lstm_hidden": 16, **options})


def _run(cfg):
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


@pytest.mark.parametrize("arch, options", [
    ("gated-dblstm", {}),
    ("darknet-dblstm", {"lstm_layers": 3, "pool_widths": 8, "dropout": 0.5}),
])
def test_new_options_train_and_resume_exactly(tmp_path, arch, options):
    full = _run(_cfg(tmp_path / "d", tmp_path / "full", 4, arch, options))
    _run(_cfg(tmp_path / "d", tmp_path / "cut", 2, arch, options))
    resumed = _run(_cfg(tmp_path / "d", tmp_path / "cut", 4, arch, options))
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
