"""`inkpack.models.io`, the one model-file format: every shipped model loads through
``load_model`` with the metadata it was shipped with and runs one forward pass; the compressed
variant is the same file format (structure rebuilt, int8 at load)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inkpack.data.alphabet import Alphabet
from inkpack.errors import ModelFileError
from inkpack.models import REGISTRY, build_model
from inkpack.models.io import input_kind, load_model, read_config, resolve, save_model

MODELS = Path(__file__).resolve().parents[2] / "models"
SAMPLE = MODELS.parent / "samples" / "hooker" / "JDH_2_16_39_002_r2l11.jpg"  # "& Co is furious. If danger"

# name -> (architecture, input kind, preprocessing height or None), as listed by `inkpack models`
SHIPPED = {
    "hanzi-lstm-char": ("lstm-char", "char", None),
    "hooker-darknet": ("darknet-dblstm", "image", 48),
    "hooker-darknet-int8": ("darknet-dblstm", "image", 48),
    "hooker-mdlstm-nodrop": ("mdlstm", "image", 64),
    "hooker-vgg": ("vgg-dblstm", "image", 48),
    "iamondb-online-blstm": ("online-blstm", "ink", None),
}


def test_the_table_covers_every_shipped_recognizer():
    names = {p.stem for p in MODELS.glob("*.json") if read_config(p.with_suffix("")).get("task") != "segment"}
    assert names == set(SHIPPED), f"add a shipped model to SHIPPED: {sorted(names ^ set(SHIPPED))}"


def _sample_line(height: int) -> torch.Tensor:
    from inkpack.data.images import prepare_line
    from inkpack.infer.preprocess import line_to_u8, u8_to_tensor

    gray = np.asarray(Image.open(SAMPLE).convert("L"))
    return u8_to_tensor(line_to_u8(prepare_line(gray, height)))[None]  # [1, 1, H, W]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_through_the_one_api_and_runs(name):
    arch, kind, height = SHIPPED[name]
    model, cfg, alphabet = load_model(name)  # a bundled name resolves to models/NAME
    assert resolve(name) == MODELS / name
    assert cfg["arch"] == arch and input_kind(cfg) == kind == REGISTRY[arch].input_kind
    shipped = json.loads((MODELS / f"{name}.json").read_text(encoding="utf-8"))
    if "decoder" in shipped:  # its LM is named beside the JSON and read as an absolute path
        lm = MODELS / shipped["decoder"]["lm"]
        assert lm.is_file() and cfg["decoder"]["lm"] == str(lm.resolve())
        shipped["decoder"]["lm"] = str(lm.resolve())
    assert cfg == shipped  # metadata as shipped
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 files load as float32
    k = alphabet.num_classes
    with torch.no_grad():  # not inference_mode: nn.mdlstm's buffer pool would keep inference tensors
        if kind == "image":
            assert cfg["preprocessing"]["height"] == height
            x = _sample_line(height)
            logits, lengths = model(x, torch.tensor([x.shape[2]]), torch.tensor([x.shape[3]]))
            assert logits.shape[1:] == (1, k) and int(lengths[0]) == logits.shape[0]
            from inkpack.decode.greedy import greedy_decode

            text = alphabet.decode(greedy_decode(logits.log_softmax(-1), lengths)[0])
            if arch != "mdlstm":  # the CNN-DBLSTMs read this line nearly right (val CER ~22-24%)
                from rapidfuzz.distance import Levenshtein

                truth = "& Co is furious. If danger"
                assert Levenshtein.distance(text, truth) / len(truth) <= 0.2, text
        else:
            feats = torch.randn(1, 40, 6)
            out = model(feats, torch.tensor([40]))
            if kind == "char":
                assert out.shape == (1, k)
            else:
                logits, lengths = out
                assert logits.shape == (10, 1, k) and lengths.tolist() == [10]  # subsample 4
        assert torch.isfinite(logits if kind != "char" else out).all()


def test_compressed_int8_model_quantizes_at_load_and_its_fp32_graph_without():
    q, cfg, _ = load_model("hooker-darknet-int8")
    fp32, _, _ = load_model("hooker-darknet-int8", int8=False)
    assert cfg["compression"]["int8"] is True
    dyn = torch.ao.nn.quantized.dynamic
    assert any(isinstance(m, (dyn.Linear, dyn.LSTM)) for m in q.modules())
    assert not any(isinstance(m, (dyn.Linear, dyn.LSTM)) for m in fp32.modules())


def test_segmentation_model_is_refused_in_one_line():
    with pytest.raises(ModelFileError, match="hooker-segment.json: a page segmentation model"):
        load_model("hooker-segment")


def test_save_then_load_round_trips_weights_and_config(tmp_path):
    alphabet = Alphabet(list("ab"))
    torch.manual_seed(0)
    model = build_model("darknet-dblstm", alphabet.num_classes, height=16, feat_dim=8, lstm_hidden=4).eval()
    cfg = {"arch": "darknet-dblstm", "options": {"height": 16, "feat_dim": 8, "lstm_hidden": 4},
           "alphabet": alphabet.to_dict(), "preprocessing": {"height": 16}}
    stem = save_model(model, cfg, tmp_path / "m")
    back, cfg2, alph2 = load_model(str(stem.with_suffix(".safetensors")))  # any of stem/.json/.safetensors
    assert cfg2 == cfg and alph2.symbols == alphabet.symbols
    for (n, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), n


def test_weights_that_do_not_fit_name_the_file_and_architecture(tmp_path):
    alphabet = Alphabet(list("ab"))
    small = build_model("darknet-dblstm", alphabet.num_classes, height=16, feat_dim=8, lstm_hidden=4)
    cfg = {"arch": "darknet-dblstm", "options": {"height": 16, "feat_dim": 8, "lstm_hidden": 4},
           "alphabet": alphabet.to_dict()}
    stem = save_model(small, cfg, tmp_path / "m")
    cfg["options"]["lstm_hidden"] = 6
    stem.with_suffix(".json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"m\.safetensors: weights do not fit architecture 'darknet-dblstm'"):
        load_model(str(stem))
    stem.with_suffix(".safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match=r"m\.safetensors: cannot read weights"):
        load_model(str(stem))
