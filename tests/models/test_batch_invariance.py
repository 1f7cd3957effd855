"""One answer per input: a line's logits (real frames) and text do not depend on its batch.

A right-padded batch of mixed widths must give every example what it gives alone. Without the
masks of ``inkpack.nn.conv.run_masked`` it does not: the padding, made non-zero by a conv's
BatchNorm shift/bias and LeakyReLU, reaches a shorter line's last frames through the next
3x3 convs (alone they read zeros), and ceil-mode pooling windows straddling the true width take
the padding's maxima (``test_without_masks_the_padding_leaks`` shows the size of that error).
The models use random BatchNorm statistics in eval mode (so BN(0) != 0, like a trained model),
and float64 where the check is 1e-9 (rounding only); float32 checks use 1e-5.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import make_tsv, randomize_batchnorm

from inkpack.compress.tucker import tucker_decompose
from inkpack.data.alphabet import Alphabet
from inkpack.data.images import load_gray
from inkpack.data.lines import load_lineset
from inkpack.decode.greedy import greedy_decode
from inkpack.models import build_model
from inkpack.models.cnn_dblstm import VGG_CFG, CNNDBLSTM
from inkpack.nn.conv import fold_batchnorm
from inkpack.infer.preprocess import u8_to_tensor
from inkpack.infer.recognizer import Recognizer

H = 32
K = 9
HEAD = {"feat_dim": 12, "lstm_hidden": 6, "dropout": 0.0}
ALPHABET = Alphabet(list("abcdefgh"))


def _model(arch: str, dtype=torch.float64, seed: int = 0) -> CNNDBLSTM:
    torch.manual_seed(seed)
    if arch == "vgg":  # VGG's layout (a conv after the last pool) with few channels
        cfg = [(t, max(2, a // 32), b) if t == "c" else (t, a, b) for t, a, b in VGG_CFG]
        m = CNNDBLSTM(K, cfg, height=H, **HEAD)
    else:
        m = build_model("darknet-dblstm", K, height=H, **HEAD)
    randomize_batchnorm(m, seed + 1)
    return m.to(dtype).eval()


def _lines(seed: int, n: int = 7, dtype=torch.float64) -> list[torch.Tensor]:
    rng = random.Random(seed)
    ws = [1, 5, 3] + [rng.randint(2, 90) for _ in range(n - 3)]  # 1 and non-multiples of 4
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, H, w, generator=g, dtype=dtype) for w in ws]


def _padded(lines: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    ws = torch.tensor([x.shape[-1] for x in lines])
    images = torch.zeros(len(lines), 1, H, int(ws.max()), dtype=lines[0].dtype)
    for i, x in enumerate(lines):
        images[i, :, :, : x.shape[-1]] = x
    return images, ws


def _assert_batch_equals_alone(model, lines, tol: float, grad: bool = False) -> None:
    """``grad``: with autograd the masks are whole-map ``torch.where`` passes (``run_masked``),
    without it in-place writes of the cells that reach real ones (``run_halo``)."""
    images, ws = _padded(lines)
    with torch.set_grad_enabled(grad):
        batch, lengths = model(images, None, ws)
        for i, x in enumerate(lines):
            alone, n = model(x[None], None, ws[i : i + 1])
            assert int(n) == int(lengths[i])
            diff = (batch[: int(n), i] - alone[:, 0]).abs().max().item()
            assert torch.isfinite(batch).all()
            assert diff <= tol, f"line {i} (width {ws[i].item()}): max |diff| {diff:.2e}"
            t_batch = greedy_decode(batch[:, i : i + 1].log_softmax(-1), lengths[i : i + 1])
            t_alone = greedy_decode(alone.log_softmax(-1), n)
            assert t_batch == t_alone


@pytest.mark.parametrize("arch", ["darknet", "vgg"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("grad", [False, True])
def test_mixed_width_batch_equals_each_line_alone_float64(arch: str, seed: int, grad: bool) -> None:
    _assert_batch_equals_alone(_model(arch, seed=seed), _lines(seed), 1e-9, grad)


@pytest.mark.parametrize("arch", ["darknet", "vgg"])
def test_float32_and_folded_batchnorm(arch: str) -> None:
    model = _model(arch, torch.float32)
    lines = _lines(3, dtype=torch.float32)
    _assert_batch_equals_alone(model, lines, 1e-5)
    assert fold_batchnorm(model) > 0  # what open_backend does: conv biases now
    _assert_batch_equals_alone(model, lines, 1e-5)


def test_tucker_compressed_convs_are_masked_inside() -> None:
    """A Tucker conv is a Sequential (1x1 -> kxk -> 1x1 with bias): the kxk inside is masked."""
    model = _model("vgg", seed=4)
    changes = tucker_decompose(model, ranks={"cnn.body.8": (4, 4)}, min_channels=1, require_gain=False)
    assert changes and any(isinstance(m, torch.nn.Sequential) for m in model.cnn.body)
    _assert_batch_equals_alone(model, _lines(4), 1e-9)
    _assert_batch_equals_alone(model, _lines(4), 1e-9, grad=True)


def test_without_masks_the_padding_leaks() -> None:
    """The same batch through the unmasked conv stack: the short lines' frames change by far
    more than rounding (so the tests above would catch a missing mask)."""
    model = _model("darknet")
    lines = _lines(0)
    images, ws = _padded(lines)
    with torch.no_grad():
        plain = model.cnn.body(images)
        masked = model.cnn(images, ws)
        n = model.output_lengths(ws)
        worst = max((plain[i, ..., : int(n[i])] - masked[i, ..., : int(n[i])]).abs().max().item()
                    for i in range(len(lines)) if ws[i] < images.shape[-1])
        full = int(ws.argmax())  # the widest line has no padding: masks change nothing there
        assert torch.equal(plain[full], masked[full])
    assert worst > 1e-2


def test_recognizer_batches_equal_alone_and_paths_share_preprocessing(tmp_path) -> None:
    """Recognizer (what recognize/API/service/report call): texts and log-probs of a batch of
    mixed widths equal each line alone; ``prepare`` feeds what ``load_lineset`` (evaluate/demo)
    stores, 8-bit rounded."""
    texts = ["the cat", "a", "hello there", "ink", "kew gardens", "to"]
    tsv = make_tsv(tmp_path, texts)
    model = _model("darknet", torch.float32, seed=5)
    rec = Recognizer(model, {"preprocessing": {"height": H}}, ALPHABET)
    lines = load_lineset(str(tsv), H, progress=False)
    grays = [load_gray(tmp_path / f"img/line{i}.png") for i in range(len(texts))]
    prepared = [rec.prepare(g) for g in grays]
    for p, u8 in zip(prepared, lines.images):
        assert torch.equal(p, u8_to_tensor(u8))
        assert torch.equal(torch.round(p * 255) / 255, p)  # on the 8-bit grid
    alone = [rec.recognize_prepared([p], 1)[0] for p in prepared]
    assert [r.text for r in rec.recognize(grays)] == alone  # batch_size 16
    assert rec.recognize_prepared(prepared, 4) == alone
    lp, n = rec.logits(prepared)
    for i, p in enumerate(prepared):
        lp1, n1 = rec.logits([p])
        assert int(n1) == int(n[i])
        assert (lp[: int(n[i]), i] - lp1[:, 0]).abs().max() <= 1e-5


def test_dynamic_int8_models_run_each_line_alone() -> None:
    """Dynamic int8 layers take one activation scale per batch tensor, so no masking can make
    a batch exact: the recognizer runs such models line by line."""
    from inkpack.compress.quantize import quantize_int8

    model = quantize_int8(_model("darknet", torch.float32, seed=6))
    rec = Recognizer(model, {"preprocessing": {"height": H}}, ALPHABET)
    assert rec.per_example
    lines = _lines(6, dtype=torch.float32)
    lp, n = rec.logits(lines)
    for i, x in enumerate(lines):
        lp1, n1 = rec.logits([x])
        assert int(n1) == int(n[i]) and torch.equal(lp[: int(n[i]), i], lp1[:, 0])
    images, ws = _padded(lines)
    with torch.no_grad():  # a plain batched forward does depend on the batch
        batch, _ = model(images, None, ws)
        alone, m = model(lines[1][None], None, ws[1:2])
    assert (batch[: int(m), 1].log_softmax(-1) - alone[:, 0].log_softmax(-1)).abs().max() > 1e-4
    assert not Recognizer(_model("darknet", torch.float32), {}, ALPHABET).per_example


@pytest.mark.parametrize("grad", [False, True])
def test_padding_value_does_not_matter_and_the_input_is_not_written(grad: bool) -> None:
    """Garbage in the padding (not zeros) is masked too, and the caller's tensor is untouched."""
    model = _model("darknet", seed=7)
    lines = _lines(7)
    images, ws = _padded(lines)
    noisy = images.clone()
    for i, w in enumerate(ws.tolist()):
        noisy[i, :, :, w:] = 3.0
    kept = noisy.clone()
    with torch.set_grad_enabled(grad):
        a, n = model(images, None, ws)
        b, _ = model(noisy, None, ws)
    assert torch.equal(noisy, kept)
    for i in range(len(lines)):
        assert (a[: int(n[i]), i] - b[: int(n[i]), i]).abs().max() <= 1e-12


def test_uint8_rounding_is_what_load_lineset_stores() -> None:
    from inkpack.infer.preprocess import line_to_u8

    img = np.array([[0.0, 0.5, 1.0, 0.0019, 0.002, 1.2, -0.1]], dtype=np.float32)
    assert line_to_u8(img).tolist() == [[0, 128, 255, 0, 1, 255, 0]]
