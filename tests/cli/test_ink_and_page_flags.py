"""`evaluate --perturb-order` and `recognize --page --check-180`: parsed once, refused in one line
where they do not apply, and handed to the library unchanged."""

from __future__ import annotations

import pytest

from cli_helpers import run
from conftest import make_tsv


@pytest.mark.parametrize("rates,needle", [
    ("swap=2", "--perturb-order"),
    ("swap", "expected NAME=RATE or permute, got 'swap'"),
    (",", "give at least one of"),
])
def test_bad_perturbation_rates_are_one_line(rates, needle, tmp_path, capsys):
    tsv = make_tsv(tmp_path, ["ab"])
    rc, _, err = run(["evaluate", str(tsv), "--perturb-order", rates], capsys)
    assert rc == 2 and needle in err and "Traceback" not in err


def test_perturbation_of_line_images_is_refused(tmp_path, capsys):
    tsv = make_tsv(tmp_path, ["ab"])
    rc, _, err = run(["evaluate", str(tsv), "--perturb-order", "swap=0.1"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "apply to ink data" in err


def test_perturbation_reaches_evaluate_ink(tmp_path, capsys, monkeypatch):
    import inkpack.ink_commands as ic

    seen = {}
    monkeypatch.setattr(ic, "evaluate_ink", lambda *a, **k: seen.update(k) or {})
    pot = tmp_path / "x.pot"
    pot.write_bytes(b"\x00" * 8)
    rc, _, err = run(["evaluate", str(pot), "--perturb-order", "swap=0.25,join=0,permute",
                      "--perturb-seed", "7"], capsys)
    assert rc == 0, err
    assert seen["perturb"] == {"swap": 0.25, "join": 0.0, "permute": True} and seen["seed"] == 7


def test_check_180_reaches_run_pages(tmp_path, capsys, monkeypatch):
    import inkpack.segment.commands as sc

    seen = {}
    monkeypatch.setattr(sc, "run_pages", lambda *a, **k: seen.update(k) or 0)
    page = tmp_path / "p.jpg"
    page.write_bytes(b"not read")
    assert run(["recognize", str(page), "--page", "--check-180"], capsys)[0] == 0
    assert seen["check_180"] is True
    assert run(["recognize", str(page), "--page"], capsys)[0] == 0
    assert seen["check_180"] is False
