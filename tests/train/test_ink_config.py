"""``InkTrainConfig.from_yaml``: paths relative to the config, one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from inkpack.errors import ConfigError
from inkpack.train.ink_train import InkTrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_ink_configs_resolve_to_the_same_paths_from_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    c = InkTrainConfig.from_yaml("configs/hanzi-lstm-char.yaml")
    assert (c.task, c.out) == ("char", "runs/hanzi-lstm-char")
    assert c.medians == "../shared/data/hanzi/medians.json.gz"
    assert c.charset == "../shared/data/hanzi/gb2312_level1.txt"
    assert c.class_schedule[0] == [200, 24] and c.lr == 0.003
    line = InkTrainConfig.from_yaml("configs/iamondb-online-blstm.yaml")
    assert (line.task, line.out) == ("line", "runs/iamondb-online-blstm")
    assert (line.train, line.val) == ("../shared/data/iamondb/train.npz", "../shared/data/iamondb/val.npz")
    assert line.fold_input_norm is True and line.val_limit == 400


def test_ink_config_paths_are_relative_to_the_config_and_flags_override(tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.npz").write_bytes(b"")
    (folder / "c.yaml").write_text("task: line\ntrain: ../data/train.npz\nval: null\nout: ../runs/x\n"
                                   "lr: 1e-3\nepochs: 3\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = InkTrainConfig.from_yaml(str(folder / "c.yaml"), epochs=5, lr=None)
    assert Path(c.train).resolve() == (tmp_path / "data" / "train.npz").resolve()
    assert Path(c.out).resolve() == (tmp_path / "runs" / "x").resolve()
    assert c.val is None and c.epochs == 5 and c.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string


@pytest.mark.parametrize("text,needle", [
    ("task: char\nsteps: 3\n", "unknown config keys ['steps']"),
    ("task: char\nepochs: many\n", "epochs: expected an integer"),
    ("- a\n- b\n", "expected a mapping"),
    ("task: [char\n", "invalid YAML"),
])
def test_bad_ink_configs_are_one_config_error_naming_the_file(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        InkTrainConfig.from_yaml(str(p))
    assert str(p) in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)


def test_train_char_with_a_config_is_one_line_on_a_bad_config(tmp_path, capsys):
    from inkpack.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text("task: char\nper_class: 0.5\n")
    assert main(["train", "--task", "char", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0] and "per_class" in err[0]
