"""Example packing (`inkpack.packing.layout`): geometry of the packer, cut and place."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from inkpack.batching import pad_collate
from inkpack.errors import InkpackError
from inkpack.packing.layout import pack, pack_batch, pack_layout, pack_tensors


def _random_sizes(rng: random.Random, n: int, hmax: int = 40, wmax: int = 120) -> list[tuple[int, int]]:
    return [(rng.randint(1, hmax), rng.randint(1, wmax)) for _ in range(n)]


def _label_map(lay) -> torch.Tensor:
    """-1 on free cells, else the example index; fails on overlap or out-of-canvas."""
    lab = torch.full((lay.n_canvas, lay.height, lay.width), -1, dtype=torch.long)
    for i in range(len(lay)):
        c, y, x, h, w = lay.canvas[i], lay.y[i], lay.x[i], lay.h[i], lay.w[i]
        assert 0 <= c < lay.n_canvas
        assert y >= 0 and x >= 0 and y + h <= lay.height and x + w <= lay.width, f"example {i} outside"
        region = lab[c, y : y + h, x : x + w]
        assert bool((region == -1).all()), f"example {i} overlaps another"
        region.fill_(i)
    return lab


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sep,align,max_h", [((1, 1), (1, 1), None), ((2, 2), (2, 2), None),
                                             ((1, 1), (2, 4), 64), ((3, 2), (1, 1), 30)])
def test_geometry(seed: int, sep, align, max_h) -> None:
    rng = random.Random(seed)
    sizes = _random_sizes(rng, rng.randint(1, 40))
    lay = pack_layout([h for h, _ in sizes], [w for _, w in sizes], sep=sep, align=align,
                      max_canvas_height=max_h)
    assert len(lay) == len(sizes)
    assert [(h, w) for h, w in zip(lay.h, lay.w)] == sizes
    lab = _label_map(lay)
    assert all(y % align[0] == 0 and x % align[1] == 0 for y, x in zip(lay.y, lay.x))
    # separators: two different examples are never closer than sep cells (rows / columns)
    sy, sx = sep
    for c in range(lay.n_canvas):
        L = lab[c]
        for d in range(1, sx + 1):
            a, b = L[:, :-d], L[:, d:]
            assert not bool(((a >= 0) & (b >= 0) & (a != b)).any()), "examples closer than sep in x"
        for d in range(1, sy + 1):
            a, b = L[:-d, :], L[d:, :]
            assert not bool(((a >= 0) & (b >= 0) & (a != b)).any()), "examples closer than sep in y"
    # fill ratio = real cells / canvas cells, counted independently on the label map
    assert lay.fill_ratio == pytest.approx(float((lab >= 0).sum()) / lab.numel())
    assert torch.equal(lay.mask(), lab >= 0)
    if max_h is not None:  # canvases may exceed max_h by at most one shelf (balanced split)
        def up(v: int) -> int:
            return -(-v // align[0]) * align[0]

        assert lay.height <= max_h + max(up(up(h) + sy) for h, _ in sizes)


def test_pack_cut_round_trip_and_zero_separators() -> None:
    rng = random.Random(7)
    sizes = _random_sizes(rng, 25)
    imgs = [torch.rand(3, h, w) + 0.5 for h, w in sizes]  # never zero
    batch = pack(imgs, labels=[[1, 2]] * len(imgs), texts=["ab"] * len(imgs), sep=(1, 1))
    lay = batch.packing
    assert batch.images.shape == (lay.n_canvas, 3, lay.height, lay.width)
    m = lay.mask()
    assert bool((batch.images.permute(1, 0, 2, 3)[:, ~m] == 0).all()), "canvas not zero off examples"
    assert bool((batch.images.permute(1, 0, 2, 3)[:, m] > 0).all())
    for a, b in zip(imgs, lay.cut(batch.images)):
        assert torch.equal(a, b)
    assert batch.real_pixels == sum(h * w for h, w in sizes)
    assert batch.target_lengths.tolist() == [2] * len(imgs)
    again, lay2 = lay.repack(imgs[::-1])
    for a, b in zip(imgs[::-1], lay2.cut(again)):
        assert torch.equal(a, b)
    padded = pad_collate(imgs, labels=[[1, 2]] * len(imgs), ids=[str(i) for i in range(len(imgs))])
    from_padded = pack_batch(padded, sep=(2, 2), align=(2, 2))
    assert from_padded.ids == padded.ids and torch.equal(from_padded.targets, padded.targets)
    for a, b in zip(imgs, from_padded.packing.cut(from_padded.images)):
        assert torch.equal(a, b)


def test_cut_downsampled_map_equals_per_example_pooling() -> None:
    """With align = pooling stride, pooling the canvas then cutting == pooling each example."""
    rng = random.Random(3)
    sizes = _random_sizes(rng, 20)
    imgs = [torch.rand(2, h, w) for h, w in sizes]
    canvases, lay = pack_tensors(imgs, sep=(2, 4), align=(2, 4))
    pooled = F.avg_pool2d(canvases, (2, 4), ceil_mode=True)
    for im, cut in zip(imgs, lay.cut(pooled, 2, 4)):
        ref = F.avg_pool2d(F.pad(im, (0, -im.shape[-1] % 4, 0, -im.shape[-2] % 2)), (2, 4))
        assert torch.allclose(ref, cut)
    assert torch.equal(lay.mask(2, 4), F.max_pool2d(lay.mask()[:, None].float(), (2, 4),
                                                    ceil_mode=True)[:, 0].bool())


def test_fill_on_word_like_sizes_is_high() -> None:
    """Many similar-height boxes pack densely (the point of packing)."""
    rng = random.Random(0)
    hs = [rng.randint(30, 36) for _ in range(64)]
    ws = [rng.randint(40, 200) for _ in range(64)]
    lay = pack_layout(hs, ws, sep=(1, 1))
    assert lay.fill_ratio > 0.85
    padded = sum(h * w for h, w in zip(hs, ws)) / (64 * max(hs) * max(ws))
    assert lay.fill_ratio > padded


def test_bad_input() -> None:
    with pytest.raises(InkpackError):
        pack_layout([], [])
    with pytest.raises(InkpackError):
        pack_layout([3, 0], [4, 5])
    lay = pack_layout([4, 5], [4, 5], align=(2, 2))
    with pytest.raises(InkpackError):
        lay.cut(torch.zeros(1, 1, 8, 8), 4, 4)
    with pytest.raises(InkpackError):
        lay.place([torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)])
