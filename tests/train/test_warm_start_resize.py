"""Fine-tuning with new characters: the warm-started model's alphabet is resized (Kraken's
``--resize union|new|fail``) and the old output rows keep their values at their new labels.

Train-free: the source model is saved, read back with ``read_init``, its alphabet resolved for
new texts and applied to a fresh model of the resized alphabet; on the same input the new
model's logits for the old characters (and the blank) are exactly the old model's.
"""

from __future__ import annotations

import pytest
import torch

from inkpack.data.alphabet import Alphabet, label_map, resize_alphabet
from inkpack.errors import ConfigError
from inkpack.models import build_model
from inkpack.models.io import save_model
from inkpack.train.warm_start import class_tensor_names, read_init

OPTS = {"height": 32, "feat_dim": 16, "lstm_hidden": 8, "dropout": 0.0}
OLD = Alphabet(list("abcé"), with_unk=False)


def _saved(tmp_path, alphabet: Alphabet = OLD, arch: str = "darknet-dblstm", opts=None):
    opts = dict(OPTS if opts is None else opts)
    torch.manual_seed(3)
    src = build_model(arch, alphabet.num_classes, **opts).eval()
    cfg = {"arch": arch, "options": opts, "alphabet": alphabet.to_dict(), "input_kind": "image"}
    return src, save_model(src, cfg, tmp_path / "src" / "m")


def _logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x, None, torch.tensor([x.shape[-1]]))[0][:, 0]


def test_union_keeps_old_rows_and_appends_new_characters(tmp_path) -> None:
    src, stem = _saved(tmp_path)
    init = read_init(str(stem))  # resize union by default
    texts = ["abd", "ça é", "b"]
    target = init.resolve(texts)
    assert target.symbols == ["a", "b", "c", "é", " ", "d", "ç"]  # old in place, then new by code point
    torch.manual_seed(11)
    new = build_model("darknet-dblstm", target.num_classes, **OPTS)
    fresh_fc = new.fc.weight.detach().clone()
    msg = init.apply(new)
    assert "output rows of 5 of 8 classes" in msg
    assert "3 added" in init.describe() and "' dç'" in init.describe()
    x = torch.rand(1, 1, 32, 57, generator=torch.Generator().manual_seed(0))
    old_lp, new_lp = _logits(src, x), _logits(new, x)
    assert new_lp.shape[-1] == 8 and old_lp.shape[-1] == 5
    # blank + a b c é: the same labels; the rows are copied exactly, the logits differ only by
    # the rounding of a GEMM with 8 instead of 5 outputs
    assert torch.equal(new.fc.weight[:5], src.fc.weight) and torch.equal(new.fc.bias[:5], src.fc.bias)
    assert (new_lp[:, :5] - old_lp).abs().max() <= 1e-6
    # the new characters' rows exist and keep the fresh initialisation
    assert torch.equal(new.fc.weight[5:], fresh_fc[5:])
    assert not torch.equal(new.fc.weight[5:], torch.zeros_like(fresh_fc[5:]))


def test_new_keeps_only_the_data_characters_and_moves_their_rows(tmp_path) -> None:
    src, stem = _saved(tmp_path)
    init = read_init(str(stem), resize="new")
    target = init.resolve(["cx", "x c"])
    assert target.symbols == [" ", "c", "x"]
    new = build_model("darknet-dblstm", target.num_classes, **OPTS)
    init.apply(new)
    x = torch.rand(1, 1, 32, 40, generator=torch.Generator().manual_seed(1))
    old_lp, new_lp = _logits(src, x), _logits(new, x)
    assert (new_lp[:, 0] - old_lp[:, 0]).abs().max() <= 1e-6  # blank
    assert (new_lp[:, 2] - old_lp[:, 3]).abs().max() <= 1e-6  # 'c': label 3 in the old alphabet, 2 now
    assert torch.equal(new.fc.weight[2], src.fc.weight[3])
    assert "3 dropped 'abé'" in init.describe() and "2 added ' x'" in init.describe()


def test_same_size_other_characters_are_remapped_not_copied(tmp_path) -> None:
    """``new`` with as many characters as before: equal shapes, but the labels mean other
    characters, so the output layer is remapped, never copied as is."""
    src, stem = _saved(tmp_path)
    init = read_init(str(stem), resize="new")
    target = init.resolve(["éxyz"])  # 4 characters, like the old 'abcé'
    assert target.num_classes == OLD.num_classes
    new = build_model("darknet-dblstm", target.num_classes, **OPTS)
    fresh = new.fc.weight.detach().clone()
    init.apply(new)
    assert target.symbols == ["x", "y", "z", "é"]
    assert torch.equal(new.fc.weight[4], src.fc.weight[4])  # é kept its row (label 4 both times)
    assert torch.equal(new.fc.weight[1:4], fresh[1:4])  # x y z: fresh rows, not a b c


def test_fail_refuses_unknown_characters_and_bad_modes(tmp_path) -> None:
    _, stem = _saved(tmp_path)
    init = read_init(str(stem), resize="fail")
    assert init.resolve(["ab", "cé"]).symbols == OLD.symbols
    with pytest.raises(ConfigError, match="'qz'"):
        init.resolve(["aq", "z"])
    with pytest.raises(ConfigError, match="resize"):
        read_init(str(stem), resize="grow")


def test_without_resolve_the_source_alphabet_and_plain_copy_stay(tmp_path) -> None:
    src, stem = _saved(tmp_path)
    init = read_init(str(stem))
    new = build_model("darknet-dblstm", OLD.num_classes, **OPTS)
    init.apply(new)
    assert init.target is None and torch.equal(new.fc.weight, src.fc.weight)


def test_unknown_symbol_row_follows_and_label_map() -> None:
    old = Alphabet(list("ab"), with_unk=True)  # labels: blank 0, a 1, b 2, unk 3
    new = resize_alphabet(old, ["bc"], "union")  # a b c unk
    assert new.symbols == ["a", "b", "c"] and new.unk_index == 4
    assert label_map(old, new) == [(0, 0), (1, 1), (2, 2), (4, 3)]
    assert label_map(old, resize_alphabet(old, ["b"], "new")) == [(0, 0), (1, 2), (2, 3)]


def test_mdlstm_output_layer_rows(tmp_path) -> None:
    opts = {"hidden": [2, 4], "conv_features": [3], "dropout": 0.0}
    src, stem = _saved(tmp_path, arch="mdlstm", opts=opts)
    init = read_init(str(stem))
    target = init.resolve(["abz"])
    new = build_model("mdlstm", target.num_classes, **opts)
    assert class_tensor_names(new, target.num_classes) == ["head.fc.weight", "head.bias"]
    init.apply(new)
    x = torch.rand(1, 1, 12, 30, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        old_lp = src(x, torch.tensor([12]), torch.tensor([30]))[0][:, 0]
        new_lp = new.eval()(x, torch.tensor([12]), torch.tensor([30]))[0][:, 0]
    assert (new_lp[:, :5] - old_lp).abs().max() <= 1e-6 and new_lp.shape[-1] == 6
    assert torch.equal(new.head.bias[:5], src.head.bias)
