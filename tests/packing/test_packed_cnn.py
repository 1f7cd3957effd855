"""Packed CNN-DBLSTM (vgg-dblstm / darknet-dblstm): layout, packed == each line alone, trainer.

What is exact: every operation but BatchNorm statistics and dropout. The models here use
dropout 0 and either ``norm: none`` (train mode) or BatchNorm in eval mode (random running
statistics and affine parameters, so a zero input does not stay zero); BatchNorm in train
mode normalises over the whole canvas, which no per-line run reproduces. Exactness is
checked in float64 (1e-9): differences there are rounding only (float32 agrees to ~1e-7 on
logits, see ``test_float32_logits``), so a real mixing between lines or a wrong pooling
edge, which shows at 1e-7..1e-3 here, cannot hide under float32 rounding.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_packed_equals_alone, make_tsv, randomize_batchnorm

from inkpack.batching import pad_collate
from inkpack.errors import InkpackError
from inkpack.models import build_model
from inkpack.models.cnn_dblstm import CNNDBLSTM, VGG_CFG
from inkpack.packing import pack_options
from inkpack.packing import packed_forward as dispatch_forward
from inkpack.packing.cnn import column_mask, packed_forward, separator
from inkpack.packing.layout import pack, pack_batch

H = 32
K = 7
HEAD = {"feat_dim": 12, "lstm_hidden": 6, "dropout": 0.0}


def _tiny_vgg(norm: str) -> CNNDBLSTM:
    """VGG's layout (a conv after the last pool) with 1/32 of its channels."""
    cfg = [(t, max(2, a // 32), b) if t == "c" else (t, a, b) for t, a, b in VGG_CFG]
    return CNNDBLSTM(K, cfg, height=H, norm=norm, **HEAD)


def _model(arch: str, norm: str, dtype=torch.float64) -> CNNDBLSTM:
    torch.manual_seed(0)
    m = _tiny_vgg(norm) if arch == "vgg" else build_model("darknet-dblstm", K, height=H, norm=norm, **HEAD)
    m = m.to(dtype)
    if norm == "batch":  # eval mode with statistics far from (0, 1): BN(0) != 0
        randomize_batchnorm(m, 1)
        m.eval()
    else:
        m.train()
    return m


def _lines(seed: int, n: int = 7, dtype=torch.float64) -> tuple[list[torch.Tensor], list[int]]:
    rng = random.Random(seed)
    ws = [1, 5] + [rng.randint(2, 90) for _ in range(n - 2)]  # 1 and non-multiples of 4 included
    return [torch.rand(1, H, w, dtype=dtype) for w in ws], ws


def _alone(model, im: torch.Tensor) -> torch.Tensor:
    logits, n = model(im[None], torch.tensor([H]), torch.tensor([im.shape[-1]]))
    return logits[: int(n[0]), 0]


def test_layout_is_one_aligned_shelf_per_canvas() -> None:
    model = _model("darknet", "none")
    opts = pack_options(model)
    assert model.width_factor == 4 and separator(model) == 4  # a 3x3 conv after two 2-wide pools
    assert separator(_tiny_vgg("none")) == 4
    rng = random.Random(0)
    ws = [rng.randint(20, 300) for _ in range(40)]
    batch = pack([torch.ones(1, H, w) for w in ws], **opts)
    lay = batch.packing
    assert batch.images.shape == (lay.n_canvas, 1, H, lay.width) and lay.width % 4 == 0
    assert all(y == 0 for y in lay.y) and all(x % 4 == 0 for x in lay.x)
    for c in range(lay.n_canvas):  # neighbours on a shelf: at least 4 zero columns between them
        spans = sorted((lay.x[i], lay.x[i] + lay.w[i]) for i in range(len(lay)) if lay.canvas[i] == c)
        assert all(b[0] - a[1] >= 4 for a, b in itertools.pairwise(spans))
    # fill counted on the canvas itself: cells that hold a line (lines are all ones)
    assert lay.fill_ratio == pytest.approx(float(batch.images.sum()) / batch.images.numel())
    assert lay.fill_ratio > 0.9
    padded = sum(ws) / (len(ws) * max(ws))
    assert lay.fill_ratio > padded
    # the mask at width factor 4 is the ceil-mode max-pool of the pixel mask (lines aligned to 4)
    m1 = column_mask(lay, 1, lay.width)[:, 0].float()
    pooled = F.max_pool2d(m1, (1, 4), ceil_mode=True).bool()
    assert torch.equal(column_mask(lay, 4, lay.width // 4)[:, 0], pooled)


@pytest.mark.parametrize("arch,norm,seed,padded_lstm", [
    ("darknet", "none", 0, True), ("darknet", "none", 1, False), ("darknet", "batch", 2, True),
    ("vgg", "none", 3, True), ("vgg", "batch", 4, False)])
def test_packed_equals_each_line_alone(arch: str, norm: str, seed: int, padded_lstm: bool) -> None:
    """padded_lstm: the DBLSTM runs each direction on the padded batch (lines reversed in
    place for the backward one); else on a PackedSequence, as ``model.sequence`` does."""
    model = _model(arch, norm)
    ims, ws = _lines(seed)
    rng = random.Random(seed)
    labels = [torch.randint(1, K, (rng.randint(1, 2),)) for _ in ims]
    batch = pack(ims, **pack_options(model))
    logits, lengths = dispatch_forward(model, batch) if padded_lstm else \
        packed_forward(model, batch, padded_lstm=False)
    assert logits.shape[:2] == (max(-(-w // 4) for w in ws), len(ims))
    assert lengths.tolist() == [-(-w // 4) for w in ws]
    assert_packed_equals_alone(model, ims, labels, logits, lengths, _alone, 1e-9)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_without_remasking_lines_differ(norm: str) -> None:
    """The check above can fail: without the masks, conv outputs leak past a line's end
    (and zeros, not the line, win the pools), so the logits move well beyond 1e-9."""
    model = _model("darknet", norm)
    ims, _ = _lines(5)
    batch = pack(ims, **pack_options(model))
    with torch.no_grad():
        good, n = packed_forward(model, batch)
        bad, _ = packed_forward(model, batch, remask=False)
        diff = max((bad[: int(k), i] - _alone(model, im)).abs().max().item()
                   for i, (im, k) in enumerate(zip(ims, n)))
        exact = max((good[: int(k), i] - _alone(model, im)).abs().max().item()
                    for i, (im, k) in enumerate(zip(ims, n)))
    assert exact <= 1e-9
    assert diff > 1e-7


def test_float32_logits() -> None:
    model = _model("darknet", "batch", torch.float32)
    ims, _ = _lines(6, dtype=torch.float32)
    with torch.no_grad():
        logits, n = packed_forward(model, pack(ims, **pack_options(model)))
        for i, im in enumerate(ims):
            assert (logits[: int(n[i]), i] - _alone(model, im)).abs().max().item() <= 1e-5


def test_generic_layout_is_repacked_and_padded_batch_packs() -> None:
    model = _model("darknet", "none")
    ims, _ = _lines(7)
    ref, lr = packed_forward(model, pack(ims, **pack_options(model)))
    for batch in (pack(ims, sep=(1, 1)), pack_batch(pad_collate(ims), **pack_options(model))):
        out, lo = packed_forward(model, batch)
        assert torch.equal(lo, lr)
        for i, k in enumerate(lr.tolist()):
            assert torch.allclose(out[:k, i], ref[:k, i], atol=1e-12, rtol=0)


def test_wrong_height_is_refused() -> None:
    model = _model("darknet", "none")
    with pytest.raises(InkpackError, match="height 32"):
        packed_forward(model, pack([torch.rand(1, H, 20), torch.rand(1, H - 4, 30)], sep=(1, 1)))


def test_trainer_packs_for_darknet(tmp_path) -> None:
    from inkpack.cli import main
    from inkpack.train.loop import TrainConfig, Trainer

    tsv = make_tsv(tmp_path / "d", ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"])
    cfg = TrainConfig(train=str(tsv), out=str(tmp_path / "t"), arch="darknet-dblstm", height=H, batch_size=4,
                      epochs=1, batching="pack", max_steps=2, progress=False, augment=False,
                      options={"feat_dim": 16, "lstm_hidden": 8})
    tr = Trainer(cfg)
    tr.setup()
    batch = tr._make_batch([0, 1, 2, 3])
    lay = batch.packing
    assert lay is not None and lay.height == H and lay.align == (1, 4) and lay.sep == (0, 4)
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.fit()
    assert tr.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())

    rc = main(["train", str(tsv), "--out", str(tmp_path / "cli"), "--arch", "darknet-dblstm", "--batching",
               "pack", "--height", str(H), "--max-steps", "3", "--batch-size", "4", "--epochs", "2",
               "--no-augment"])
    assert rc == 0
    assert torch.load(tmp_path / "cli" / "last.pt", weights_only=False)["global_step"] == 3
