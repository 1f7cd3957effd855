"""Registry capabilities (issue 19): each architecture declares its input kind, model class,
packed forward pass, ONNX exporter and preprocessing in its entry, and packing / export find
them there; a new architecture is one module (here: this test module)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError
from inkpack.models import REGISTRY, build_model, register, spec_for
from inkpack.models.registry import load_capability, with_capability

SMALL = {  # options that build each architecture quickly
    "darknet-dblstm": {"height": 16, "feat_dim": 8, "lstm_hidden": 4},
    "vgg-dblstm": {"height": 16, "feat_dim": 8, "lstm_hidden": 4},
    "gated-dblstm": {"height": 16, "feat_dim": 8, "lstm_hidden": 4},
    "mdlstm": {"hidden": [2, 3, 4], "conv_features": [3, 5]},
    "lstm-char": {"hidden1": 4, "hidden2": 4, "fc": 4},
    "online-blstm": {"hidden": 4, "layers": 1},
}


def test_every_architecture_declares_a_kind_and_its_class():
    assert set(REGISTRY) == set(SMALL)
    for name, spec in REGISTRY.items():
        assert spec.input_kind in ("image", "ink", "char"), name
        model = build_model(name, 5, **SMALL[name])
        assert spec.model_class is not None and isinstance(model, spec.model_class), name
        assert spec_for(model, {"arch": name}) is spec
        assert spec_for(model).model_class is spec.model_class  # a bare module finds its class's entry


def test_packing_is_declared_by_the_three_packable_architectures():
    # the trainer's former hard-coded tuple ("mdlstm", "vgg-dblstm", "darknet-dblstm")
    assert with_capability("packing") == ["darknet-dblstm", "mdlstm", "vgg-dblstm"]
    for name in with_capability("packing"):
        mod = load_capability(REGISTRY[name].packing)
        assert all(callable(getattr(mod, f)) for f in ("pack_options", "prepare", "packed_forward")), name


def test_a_model_without_a_packed_pass_is_refused_in_one_line():
    from inkpack.packing import pack_options

    with pytest.raises(InkpackError, match="no packed forward pass for OnlineBLSTM .*darknet-dblstm, mdlstm"):
        pack_options(build_model("online-blstm", 5, **SMALL["online-blstm"]))


def test_exporters_and_the_mdlstm_refusal():
    from inkpack.deploy.export import export_cnn_dblstm
    from inkpack.deploy.export_ink import export_lstm_char, export_online_blstm

    want = {"darknet-dblstm": export_cnn_dblstm, "vgg-dblstm": export_cnn_dblstm, "gated-dblstm": export_cnn_dblstm,
            "lstm-char": export_lstm_char, "online-blstm": export_online_blstm}
    assert {n: load_capability(REGISTRY[n].exporter) for n in with_capability("exporter")} == want
    assert REGISTRY["mdlstm"].exporter is None
    assert REGISTRY["mdlstm"].no_export.startswith("MDLSTM models cannot be exported to ONNX with a dynamic width")


def test_image_preprocessing_is_the_recognizers():
    from inkpack.infer.ink_preprocess import prepare_ink
    from inkpack.infer.preprocess import prepare_image
    from inkpack.infer.recognizer import Recognizer

    assert set(REGISTRY) == set(with_capability("preprocess"))  # every architecture declares it
    want = {"image": prepare_image, "ink": prepare_ink, "char": prepare_ink}
    assert all(load_capability(s.preprocess) is want[s.input_kind] for s in REGISTRY.values())
    cfg = {"arch": "darknet-dblstm", "preprocessing": {"height": 16}}
    gray = np.random.default_rng(0).integers(0, 256, (30, 70)).astype(np.uint8)
    x = prepare_image(gray, cfg)
    assert x.shape[:2] == (1, 16) and x.dtype == torch.float32
    rec = Recognizer(build_model("darknet-dblstm", 5, **SMALL["darknet-dblstm"]), cfg, Alphabet(list("abcd")))
    assert torch.equal(rec.prepare(gray), x)


# ---------------------------------------------------------------- a new architecture: one module

class Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)


def tiny_exporter(model: nn.Module, path) -> dict:
    path.write_bytes(b"not really onnx")
    return {"inputs": ["x"], "outputs": ["y"]}


@pytest.fixture
def tiny_arch():
    register("tiny-test", "ink", "a test architecture", model_class=Tiny, exporter=f"{__name__}:tiny_exporter")(Tiny)
    yield REGISTRY["tiny-test"]
    del REGISTRY["tiny-test"]


def test_a_new_architecture_is_one_module(tiny_arch, tmp_path):
    from inkpack.deploy.export import export_onnx

    model = build_model("tiny-test", 4)
    assert spec_for(model) is tiny_arch
    cfg = {"arch": "tiny-test", "alphabet": Alphabet(list("abc")).to_dict()}
    out = export_onnx(model, tmp_path / "t.onnx", config=cfg)
    assert out.read_bytes() == b"not really onnx"
    side = json.loads((tmp_path / "t.onnx.json").read_text())
    assert side["onnx"]["input_kind"] == "ink" and side["onnx"]["inputs"] == ["x"]
    with pytest.raises(InkpackError, match="no packed forward pass for Tiny"):
        from inkpack.packing import packed_forward

        packed_forward(model, None)
