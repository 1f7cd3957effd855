"""Shared fixtures: tiny labelled line images the tests make themselves."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WORDS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"]


def render_text(text: str, height: int = 40, invert: bool = False) -> Image.Image:
    """Dark text on light paper (or the opposite) as an 'L' image."""
    font = ImageFont.load_default(size=int(height * 0.6))
    w = int(font.getlength(text)) + 12
    img = Image.new("L", (max(w, 8), height), 230)
    ImageDraw.Draw(img).text((6, height * 0.15), text, fill=20, font=font)
    return Image.eval(img, lambda v: 255 - v) if invert else img


def make_tsv(root: Path, texts: list[str], name: str = "data.tsv") -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["image\ttext"]
    for i, t in enumerate(texts):
        rel = f"img/line{i}.png"
        render_text(t).save(root / rel)
        rows.append(f"{rel}\t{t}")
    path = root / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_tsv(tmp_path: Path) -> Path:
    return make_tsv(tmp_path, WORDS)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


def randomize_batchnorm(model, seed: int) -> None:
    """BatchNorm statistics and affine terms far from (0, 1), so that in eval mode BN(0) != 0:
    padding that leaks through a BatchNorm shows in the outputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


os.environ.setdefault("MPLBACKEND", "Agg")


def assert_packed_equals_alone(model, ims, labels, logits, lengths, alone, tol: float) -> None:
    """Per-example logits, CTC losses and summed parameter gradients of a packed forward
    (``logits [T, B, K]``, ``lengths``) equal those of each example run alone (``alone(model,
    im) -> [n, K]``) to ``tol``."""
    import torch
    import torch.nn.functional as F

    tl = torch.tensor([len(lab) for lab in labels])
    losses = F.ctc_loss(logits.log_softmax(-1), torch.cat(labels), lengths, tl, reduction="none",
                        zero_infinity=True)
    model.zero_grad()
    losses.sum().backward()
    g_packed = [p.grad.clone() for p in model.parameters()]
    g_alone = [torch.zeros_like(p) for p in model.parameters()]
    for i, im in enumerate(ims):
        model.zero_grad()
        ref = alone(model, im)
        n = ref.shape[0]
        assert int(lengths[i]) == n
        assert (logits[:n, i] - ref).abs().max().item() <= tol
        loss = F.ctc_loss(ref.log_softmax(-1)[:, None], labels[i], torch.tensor([n]), tl[i : i + 1],
                          reduction="none", zero_infinity=True)
        assert abs(loss.item() - losses[i].item()) <= tol
        loss.sum().backward()
        for acc, p in zip(g_alone, model.parameters()):
            acc += p.grad
    for (name, _), a, b in zip(model.named_parameters(), g_alone, g_packed):
        assert (a - b).abs().max().item() <= tol, name
