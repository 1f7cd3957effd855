"""Warm start: shared tensors are copied from a trained model of another architecture."""

import pytest
import torch
from conftest import make_tsv

from inkpack.cli import main
from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError
from inkpack.models import build_model
from inkpack.models.io import save_model
from inkpack.train.loop import TrainConfig, Trainer


def _source(tmp_path, texts):
    alphabet = Alphabet.from_texts(texts)
    torch.manual_seed(7)
    src = build_model("darknet-dblstm", alphabet.num_classes, height=32, feat_dim=32, lstm_hidden=16)
    cfg = {"arch": "darknet-dblstm", "options": {"height": 32, "feat_dim": 32, "lstm_hidden": 16},
           "alphabet": alphabet.to_dict(), "input_kind": "image"}
    return src, save_model(src, cfg, tmp_path / "src" / "m")


def _trainer(tmp_path, texts, **kw):
    tsv = make_tsv(tmp_path / "d", texts)
    cfg = TrainConfig(train=str(tsv), out=str(tmp_path / "run"), arch="vgg-dblstm", height=32, batch_size=2,
                      epochs=1, max_steps=1, progress=False, options={"feat_dim": 32, "lstm_hidden": 16}, **kw)
    tr = Trainer(cfg)
    tr.setup()
    return tr


def test_shared_layers_are_copied_and_the_cnn_is_not(tmp_path):
    texts = ["the cat", "a dog", "kew"]
    src, stem = _source(tmp_path, ["zebra quay"] + texts)  # a larger alphabet than the data's
    tr = _trainer(tmp_path, texts, init_from=str(stem), init_layers=["lstm.", "fc."])
    own, ref = tr.model.state_dict(), src.state_dict()
    assert torch.equal(own["lstm.weight_ih_l0"], ref["lstm.weight_ih_l0"])
    assert torch.equal(own["fc.weight"], ref["fc.weight"])
    # proj has another input size (VGG features) and is outside the prefixes anyway
    assert own["proj.weight"].shape != ref["proj.weight"].shape
    assert tr.alphabet.symbols == Alphabet.from_dict(_source_alphabet(stem)).symbols


def _source_alphabet(stem):
    import json

    return json.loads(stem.with_suffix(".json").read_text())["alphabet"]


def test_prefixes_limit_what_is_copied(tmp_path):
    texts = ["the cat", "a dog"]
    src, stem = _source(tmp_path, texts)
    tr = _trainer(tmp_path, texts, init_from=str(stem), init_layers=["fc."])
    assert torch.equal(tr.model.state_dict()["fc.weight"], src.state_dict()["fc.weight"])
    assert not torch.equal(tr.model.state_dict()["lstm.weight_ih_l0"], src.state_dict()["lstm.weight_ih_l0"])


def test_nothing_shared_is_a_clear_error(tmp_path):
    texts = ["the cat", "a dog"]
    _, stem = _source(tmp_path, texts)
    with pytest.raises(InkpackError, match="no tensor matches"):
        _trainer(tmp_path, texts, init_from=str(stem), init_layers=["nothing."])


def test_cli_missing_model_is_one_line_error(tmp_path, capsys):
    tsv = make_tsv(tmp_path / "d", ["the cat", "a dog"])
    rc = main(["train", str(tsv), "--out", str(tmp_path / "o"), "--init-from", str(tmp_path / "nope"),
               "--max-steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "model not found" in err and len(err.splitlines()) == 1


def test_fine_tuning_with_new_characters_extends_the_alphabet(tmp_path):
    """--init-from a model lacking some of the data's characters: no line is skipped, the old
    characters keep their labels and output rows, the new ones are appended (resize union)."""
    old = Alphabet(list("aehlot "))
    torch.manual_seed(7)
    opts = {"height": 32, "feat_dim": 32, "lstm_hidden": 16}
    src = build_model("darknet-dblstm", old.num_classes, **opts)
    stem = save_model(src, {"arch": "darknet-dblstm", "options": opts, "alphabet": old.to_dict(),
                            "input_kind": "image"}, tmp_path / "src" / "m")
    tsv = make_tsv(tmp_path / "d", ["the cat", "a dog", "kew", "hello"])  # c d g k w are new
    cfg = TrainConfig(train=str(tsv), out=str(tmp_path / "run"), arch="darknet-dblstm", height=32, batch_size=2,
                      epochs=1, max_steps=1, progress=False, options={"feat_dim": 32, "lstm_hidden": 16},
                      init_from=str(stem))
    tr = Trainer(cfg)
    tr.setup()
    assert tr.alphabet.symbols == list("aehlot ") + ["c", "d", "g", "k", "w"]
    assert len(tr.train_set) == 4 and not tr.skipped
    assert torch.equal(tr.model.fc.weight[: old.num_classes], src.fc.weight)
    tr.fit()  # trains a step with the extended output layer
