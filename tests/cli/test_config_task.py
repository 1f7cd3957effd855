"""The YAML's ``task`` key chooses the trainer (``--task`` still wins); a config given to the
wrong trainer is one line naming the file."""

from __future__ import annotations

import pytest

from inkpack import cli
from cli_helpers import run
from inkpack.cli import train_task


def yaml_file(tmp_path, body: str):
    p = tmp_path / "c.yaml"
    p.write_text(body, encoding="utf-8")
    return str(p)


def test_train_task_precedence(tmp_path):
    char = yaml_file(tmp_path, "task: char\nout: x\n")
    assert train_task(None, char) == "char"
    assert train_task("line", char) == "line"  # the flag wins
    assert train_task(None, None) == "lines"
    assert train_task(None, str(tmp_path / "missing.yaml")) == "lines"  # its trainer reports it


def test_config_task_routes_to_the_ink_trainer(tmp_path, capsys, monkeypatch):
    import inkpack.cli.train as ct

    seen = {}
    monkeypatch.setattr(ct, "train_ink", lambda a: seen.setdefault("task", a.task) and 0)
    cfg = yaml_file(tmp_path, "task: char\nout: runs/x\n")
    assert run(["train", "--config", cfg], capsys)[0] == 0
    assert seen["task"] == "char"


def test_config_task_routes_to_the_segmenter(tmp_path, capsys, monkeypatch):
    import inkpack.train.segment as ts

    seen = {}
    monkeypatch.setattr(ts, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    cfg = yaml_file(tmp_path, "task: segment\ntrain: pages\n")
    assert run(["train", "--config", cfg, "--epochs", "2"], capsys)[0] == 0
    assert seen["argv"] == ["--config", cfg, "--epochs", "2"]


@pytest.mark.parametrize("body,needle", [
    ("task: char\n", "task is 'char', a config for `inkpack train --task char`"),
    ("task: pages\n", "task must be one of lines, char, line, segment, not 'pages'"),
])
def test_a_config_for_another_trainer_is_one_line(body, needle, tmp_path, capsys):
    cfg = yaml_file(tmp_path, body + "train: t.tsv\n")
    argv = ["train", "--config", cfg] + (["--task", "lines"] if "char" in body else [])
    rc, _, err = run(argv, capsys)
    assert rc == 2 and needle in err and err.count("\n") == 1 and cfg in err


def test_segment_config_with_another_task_is_refused(tmp_path):
    from inkpack.errors import ConfigError
    from inkpack.train.segment import read_config

    with pytest.raises(ConfigError, match="task is 'lines', not a segmenter config"):
        read_config(yaml_file(tmp_path, "task: lines\n"))
    assert "task" not in read_config(yaml_file(tmp_path, "task: segment\nlr: 0.1\n"))


def test_shipped_configs_name_their_task():
    from pathlib import Path

    root = Path(cli.__file__).resolve().parents[3] / "configs"
    tasks = {p.name: cli.config_task(str(p)) for p in root.glob("*.yaml")}
    assert tasks["hanzi-lstm-char.yaml"] == "char" and tasks["iamondb-online-blstm.yaml"] == "line"
    assert tasks["segment-hooker.yaml"] == "segment"
