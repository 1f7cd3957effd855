"""Strict JSON from the compress/report commands and the training history (no NaN tokens)."""

from __future__ import annotations

import argparse
import json

import pytest

from inkpack.train.history import write_history


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_history_json_is_strict_and_csv_keeps_every_record(tmp_path):
    hist = [{"epoch": 0, "train_loss": float("nan"), "val_cer": 0.5},
            {"epoch": 1, "train_loss": float("inf"), "val_cer": 0.25}]
    write_history(hist, tmp_path)
    data = _strict((tmp_path / "history.json").read_text())
    assert data == [{"epoch": 0, "train_loss": None, "val_cer": 0.5},
                    {"epoch": 1, "train_loss": None, "val_cer": 0.25}]
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_cer" and rows[1] == "0,nan,0.5" and len(rows) == 3
    assert not list(tmp_path.glob(".history*"))  # atomic writes leave no temporary file


def test_report_json_is_strict(tmp_path, monkeypatch, capsys):
    from inkpack.compress import commands

    rows = {"m": {"params": 10, "ms": float("nan"), "cer": float("inf")}}
    monkeypatch.setattr(commands, "report", lambda *a, **k: rows)
    monkeypatch.setattr("inkpack.compress.report.format_table", lambda r: "table")
    out = tmp_path / "sub" / "r.json"
    args = argparse.Namespace(models=["m"], data=None, limit=None, runs=1, json=str(out), plot=None)
    from inkpack.cli.compress import cmd_report

    assert cmd_report(args) == 0
    assert _strict(out.read_text()) == {"m": {"params": 10, "ms": None, "cer": None}}


def test_compress_criteria_match_the_distiller():
    pytest.importorskip("torch")
    from inkpack.compress.commands import CRITERIA
    from inkpack.compress.distill import CRITERIA as DISTILL

    assert CRITERIA == DISTILL
