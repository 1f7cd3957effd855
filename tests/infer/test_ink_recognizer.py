"""inkpack.infer on ink: the one Recognizer reads characters and ink lines (PyTorch and ONNX
Runtime), in input order, with hand-computed candidates and positions, and ``evaluate`` on ink
runs through it (so an ``.onnx`` ink model evaluates to the PyTorch model's figures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inkpack.data.alphabet import Alphabet
from inkpack.data.formats.iamondb import write_iamondb_npz
from inkpack.data.formats.pot import write_pot
from inkpack.data.ink import Ink
from inkpack.decode.beam import Decoder
from inkpack.errors import BadSampleError, InkpackError
from inkpack.infer.backend import OrtInkBackend, TorchInkBackend
from inkpack.infer.decode import char_recognition, ink_line_recognition
from inkpack.infer.ink_preprocess import PreparedInk, prepare_ink
from inkpack.infer.recognizer import Recognizer, open_recognizer
from inkpack.ink_commands import evaluate_ink
from inkpack.models import build_model
from inkpack.models.io import save_model

ABC = Alphabet(list("abc"))  # classes: 0 blank, 1 a, 2 b, 3 c


def _ink(n: int, seed: int = 0) -> Ink:
    rng = np.random.default_rng(seed)
    xy = 1000 + np.rint(np.cumsum(rng.normal(0, 5, (n, 2)), axis=0))  # integers: .pot / .npz keep them
    return Ink([np.column_stack([xy, np.arange(n) * 10.0])])


def _save(tmp_path, arch: str, **opts):
    torch.manual_seed(0)
    model = build_model(arch, ABC.num_classes, **opts).eval()
    return save_model(model, {"arch": arch, "options": opts, "alphabet": ABC.to_dict(), "preprocessing": {}},
                      tmp_path / arch)


def test_char_candidates_are_the_softmax_top_classes_without_the_blank():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.6, 0.1]))  # softmax gives these back
    r = char_recognition(logits, ABC, top_k=3)
    assert r.text == "b" and [c for c, _ in r.candidates] == ["b", "a"]  # class 0 (0.1) is no label
    assert r.candidates[0][1] == pytest.approx(0.6) and r.confidences == [pytest.approx(0.6)]
    assert r.positions == []


def test_ink_line_positions_are_the_x_range_of_the_points_read():
    # 4 frames over 8 points (2 a frame): frames 0-1 read 'a', frame 2 blank, frame 3 'c'
    p = np.full((4, 4), 0.02)
    for t, c in enumerate([1, 1, 0, 3]):
        p[t, c] = 0.94
    x = np.array([10.0, 12.0, 11.0, 15.0, 30.0, 31.0, 40.0, 38.0])
    r = ink_line_recognition(torch.tensor(np.log(p)), 4, x, ABC)
    assert r.text == "ac" and r.positions == [(10.0, 15.0), (38.0, 40.0)]
    assert r.confidences == [pytest.approx(0.94), pytest.approx(0.94)]
    assert r.candidates == [("ac", pytest.approx(0.94 ** 2))]


class CountingChar(torch.nn.Module):
    """A character 'model' answering class 1 + (length mod 3): shows which sample is which."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, feats, lengths):
        self.calls.append(len(lengths))
        out = torch.full((len(lengths), 4), -10.0)
        out[torch.arange(len(lengths)), 1 + lengths % 3] = 10.0
        return out


def test_ink_runs_in_input_order_32_a_call():
    net = CountingChar()
    rec = Recognizer(net, {"arch": "lstm-char"}, ABC)
    assert rec.input_kind == "char" and isinstance(rec.engine, TorchInkBackend) and rec.batch_size == 32
    prepared = [PreparedInk(torch.zeros(n, 6), np.zeros(n)) for n in range(1, 71)]
    texts = [r.text for r in rec.run_batched(prepared)]
    assert net.calls == [32, 32, 6]
    assert texts == ["abc"[n % 3] for n in range(1, 71)]
    info = rec.info()
    assert info["kind"] == info["input_kind"] == "char" and info["symbols"] == 3 and info["classes"] == 4


def test_decoder_refused_on_a_character_model_and_ink_inputs_checked():
    with pytest.raises(InkpackError, match="decoders apply to line models"):
        Recognizer(CountingChar(), {"arch": "lstm-char"}, ABC, Decoder("beam"))
    with pytest.raises(BadSampleError, match="missing 'strokes'"):
        prepare_ink({"points": []}, {"preprocessing": {}})
    prepared = prepare_ink({"strokes": [[[0, 0], [3, 4], [6, 8], [9, 1]]]}, {"preprocessing": {}})
    assert prepared.features.shape[1] == 6 and len(prepared.point_x) == len(prepared.features)


@pytest.mark.parametrize("arch,opts", [("lstm-char", {"hidden1": 8, "hidden2": 8, "fc": 8}),
                                       ("online-blstm", {"hidden": 8, "layers": 1})])
def test_torch_and_onnx_ink_recognizers_and_evaluate_agree(arch, opts, tmp_path):
    from inkpack.deploy.export import export_onnx

    stem = _save(tmp_path, arch, **opts)
    onnx = export_onnx(str(stem), tmp_path / f"{arch}.onnx")
    pt, ort = open_recognizer(str(stem)), open_recognizer(onnx)
    assert isinstance(ort.engine, OrtInkBackend) and ort.backend == "onnxruntime" and pt.backend == "torch"
    inks = [_ink(n, n) for n in (5, 40, 17, 80)]
    for ink, label in zip(inks, "abca"):
        ink.label = label
    a, b = pt.recognize(inks), ort.recognize(inks)
    assert [r.text for r in a] == [r.text for r in b]
    for x, y in zip(a, b):
        assert np.allclose(x.confidences, y.confidences, atol=1e-5) and x.positions == y.positions
    assert a[2].text == pt.recognize(inks[2]).text  # alone or in a batch
    data = tmp_path / ("chars.pot" if arch == "lstm-char" else "lines.npz")
    if arch == "lstm-char":
        write_pot(data, inks)
    else:
        write_iamondb_npz(data, inks)
    ep, eo = evaluate_ink(str(data), str(stem)), evaluate_ink(str(data), str(onnx), batch_size=3)
    key = "accuracy" if arch == "lstm-char" else "cer"
    assert ep[key] == eo[key] and not math.isnan(ep[key])
    if arch == "lstm-char":  # the figures are what the recognizer reads
        assert ep["accuracy"] == sum(r.text == i.label for r, i in zip(a, inks)) / len(inks)
