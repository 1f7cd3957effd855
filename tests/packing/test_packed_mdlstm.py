"""Packed forward pass of the mdlstm model (`inkpack.packing.mdlstm`, reached through the
registry's ``packing`` capability): packed == each example alone."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import assert_packed_equals_alone

from inkpack.packing import pack


def _random_sizes(rng: random.Random, n: int, hmax: int = 40, wmax: int = 120) -> list[tuple[int, int]]:
    return [(rng.randint(1, hmax), rng.randint(1, wmax)) for _ in range(n)]


def _small_mdlstm(num_classes: int = 6) -> torch.nn.Module:
    from inkpack.models import REGISTRY, build_model

    if "mdlstm" not in REGISTRY:
        pytest.skip("architecture 'mdlstm' not available")
    torch.manual_seed(0)
    return build_model("mdlstm", num_classes, **SMALL).double().eval()


SMALL: dict = {"hidden": [2, 3, 4], "conv_features": [3, 5], "dropout": 0.0}


def _alone(model, im: torch.Tensor) -> tuple[torch.Tensor, int]:
    logits, n = model(im[None], torch.tensor([im.shape[-2]]), torch.tensor([im.shape[-1]]))
    return logits[: int(n[0]), 0], int(n[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_packed_forward_equals_each_example_alone(seed: int) -> None:
    from inkpack.packing import pack_options, packed_forward

    model = _small_mdlstm()
    rng = random.Random(seed)
    sizes = [(1, 1), (2, 33)] + _random_sizes(rng, 6, hmax=37, wmax=130)
    ims = [torch.rand(1, h, w, dtype=torch.float64) for h, w in sizes]
    labels = [torch.randint(1, 6, (rng.randint(1, 2),)) for _ in ims]
    logits, lengths = packed_forward(model, pack(ims, **pack_options(model)))
    assert logits.shape[1] == len(ims)
    assert_packed_equals_alone(model, ims, labels, logits, lengths, lambda m, im: _alone(m, im)[0], 1e-5)


def test_packed_forward_repacks_a_generic_layout() -> None:
    """A batch packed without the model's options (1-pixel separators) gives the same logits."""
    from inkpack.packing import pack_options, packed_forward

    model = _small_mdlstm()
    rng = random.Random(5)
    ims = [torch.rand(1, h, w, dtype=torch.float64) for h, w in _random_sizes(rng, 5, 30, 90)]
    a, la = packed_forward(model, pack(ims, sep=(1, 1)))
    b, lb = packed_forward(model, pack(ims, **pack_options(model)))
    assert torch.equal(la, lb)
    for i, n in enumerate(la.tolist()):
        assert torch.allclose(a[:n, i], b[:n, i], atol=1e-12)
