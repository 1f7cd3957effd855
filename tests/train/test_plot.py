"""Curve PNGs: one run's, and several runs against training minutes or epochs."""

import json

from PIL import Image

from inkpack.train.plot import main, plot_runs


def _hist(cers, minutes=2.0):
    return [{"epoch": i + 1, "elapsed_s": 60 * minutes * (i + 1), "val_cer": c} for i, c in enumerate(cers)]


def test_several_runs_in_one_png(tmp_path):
    out = tmp_path / "c.png"
    pts = plot_runs({"a": _hist([0.9, 0.5, 0.3]), "b": _hist([0.8, 0.6], 3.0), "none": [{"elapsed_s": 1}]}, out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (640, 400)
    assert pts == {"a": [(2.0, 90.0), (4.0, 50.0), (6.0, 30.0)], "b": [(3.0, 80.0), (6.0, 60.0)]}


def test_runs_against_epochs(tmp_path):
    pts = plot_runs({"a": _hist([0.9, 0.5, 0.3]), "b": _hist([0.8, 0.6], 3.0)}, tmp_path / "e.png", by_epoch=True)
    assert pts == {"a": [(1, 90.0), (2, 50.0), (3, 30.0)], "b": [(1, 80.0), (2, 60.0)]}
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_command_line_writes_the_png_or_names_the_bad_file(tmp_path, capsys):
    h = tmp_path / "h.json"
    h.write_text(json.dumps(_hist([0.7, 0.4])), encoding="utf-8")
    assert main([str(tmp_path / "o.png"), f"run={h}"]) == 0
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path / "x.png"), f"run={tmp_path / 'missing.json'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path / 'missing.json'}: cannot read a history") and "\n" not in err
    assert main([str(tmp_path / "x.png"), "no-label"]) == 2 and not (tmp_path / "x.png").exists()
    assert main(["--by-epoch", "--ymax", "50", str(tmp_path / "e.png"), f"run={h}"]) == 0
    assert (tmp_path / "e.png").exists()
    assert main(["--ymax", "x", str(tmp_path / "y.png"), f"run={h}"]) == 2 and not (tmp_path / "y.png").exists()
