"""The command line is one package, ``inkpack.cli`` (issue 19): a module per command group, the
options several commands share defined once in ``inkpack.cli.options``, the old modules gone."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import inkpack.cli as cli

PKG = Path(cli.__file__).resolve().parent
SHARED = ("--model", "--threads", "--device", "--batch-size", "--images", "--progress", "--decoder", "--beam",
          "--lm", "--lexicon", "--alpha", "--beta", "--seg-model", "--check-180")


def test_shared_options_are_defined_only_in_the_options_module():
    pattern = re.compile(r"add_argument\(\s*\"(--[a-z0-9-]+)\"")
    for path in PKG.glob("*.py"):
        if path.name == "options.py":
            continue
        again = [f for f in pattern.findall(path.read_text(encoding="utf-8")) if f in SHARED]
        assert again == [], f"{path.name} defines {again} again; use inkpack.cli.options"
    defined = pattern.findall((PKG / "options.py").read_text(encoding="utf-8"))
    assert set(SHARED) <= set(defined) and len(defined) == len(set(defined))  # each once


@pytest.mark.parametrize("old", ["inkpack.cli_run", "inkpack.cli_models", "inkpack.cli_types",
                                 "inkpack.deploy.commands"])
def test_the_old_command_modules_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_library_modules_hold_no_parsers():
    import inkpack.compress.commands as cc
    import inkpack.ink_commands as ic
    import inkpack.segment.commands as sc

    for mod in (cc, ic, sc):
        assert not hasattr(mod, "add_parsers") and "argparse" not in vars(mod), mod.__name__
    assert not hasattr(ic, "train_ink") and not hasattr(sc, "cmd_segment")


def test_segment_formats_are_the_writers():
    from inkpack.cli.pages import FORMATS
    from inkpack.segment.commands import SUFFIX

    assert FORMATS == tuple(sorted(SUFFIX))


def test_every_command_parses_from_the_package(capsys):
    p = cli.build_parser()
    a = p.parse_args(["evaluate", "d.tsv", "--threads", "2", "--device", "cpu", "--lm", "x.arpa"])
    assert (a.threads, a.device, a.batch_size, a.decoder, a.lm, a.fn.__module__) == \
        (2, "cpu", 1, None, "x.arpa", "inkpack.cli.run")
    a = p.parse_args(["segment", "p.jpg", "--threads", "0"])  # segment keeps its plain int (0 -> 1 thread)
    assert (a.threads, a.format, a.fn.__module__) == (0, "page", "inkpack.cli.pages")
    a = p.parse_args(["serve"])
    assert (a.threads, a.beam, a.alpha, a.fn.__module__) == (1, 16, 0.5, "inkpack.cli.deploy")
    a = p.parse_args(["compress", "m", "--out", "o"])
    assert (a.threads, a.batch_size, a.fn.__module__) == (0, 16, "inkpack.cli.compress")
    a = p.parse_args(["train", "t.tsv"])
    assert (a.threads, a.device, a.batch_size, a.fn.__module__) == (None, None, None, "inkpack.cli.train")


def test_python_dash_m_and_the_entry_point_reach_main():
    out = subprocess.run([sys.executable, "-m", "inkpack", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("inkpack ")
    text = (PKG.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'inkpack = "inkpack.cli:main"' in text


def test_train_options_come_from_the_config_fields():
    """A field declared with ``flag(...)`` is an option of ``inkpack train``: one line adds both."""
    import argparse
    from dataclasses import dataclass, fields

    from inkpack.cli.train import add_config_flags, overrides
    from inkpack.train.config import TrainConfig, flag

    @dataclass
    class Toy:
        data: str = flag("", "data (default: none)", flag="data")
        steps_per_log: int = flag(50, "steps between log lines", type="positive_int")
        width: int = flag(64, "line width", type="min_int:8", flag="--w")
        tidy: bool = flag(False, "tidy up")
        hidden: float = 0.5

    p = cli.Parser(prog="toy")
    add_config_flags(p, Toy)
    a = p.parse_args(["d", "--steps-per-log", "7", "--w", "9", "--tidy"])
    assert overrides(a, Toy) == {"data": "d", "steps_per_log": 7, "width": 9, "tidy": True}
    assert overrides(p.parse_args([]), Toy) == {"data": None, "steps_per_log": None, "width": None, "tidy": None}
    assert "steps between log lines (default: 50)" in " ".join(p.format_help().split())
    with pytest.raises(SystemExit):
        p.parse_args(["--w", "7"])  # min_int:8
    flagged = {f.name for f in fields(TrainConfig) if "cli" in f.metadata}
    train = cli.build_parser().parse_args(["train"])
    assert flagged == set(overrides(train, TrainConfig)) and isinstance(train, argparse.Namespace)
