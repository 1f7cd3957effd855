"""Cross-owner wiring: PAGE-XML evaluate with --images, named skips of page lines, line-image
warnings in recognize and the API, too-wide files refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run
from inkpack.api import load
from inkpack.data.lines import load_lineset, read_records
from inkpack.errors import ConfigError, InputTooLargeError
from page_builders import line, noise_image, page_doc, write

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "hooker" / "JDH_2_16_38_001_r1l13.jpg"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A PAGE-XML whose image lies in another folder: one ordinary line, one 981x2 px line."""
    root = tmp_path_factory.mktemp("page")
    noise_image(root / "imgs" / "p.png", 1000, 300)
    body = ('<TextRegion id="r"><Coords points="0,0 1000,0 1000,300 0,300"/>'
            + line("l1", (10, 20, 300, 60), "abc") + line("flat", (10, 100, 990, 101), "xyz") + "</TextRegion>")
    return write(root / "xml" / "p.xml", page_doc("2019-07-15", "p.png", body, w=1000)), root / "imgs"


def test_evaluate_pagexml_takes_images_and_names_skipped_lines(page, tmp_path, capsys):
    xml, imgs = page
    rc, _, err = run(["evaluate", str(xml)], capsys)
    assert rc == 2 and "p.png" in err and "--images" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    rc, stdout, err = run(["evaluate", str(xml), "--images", str(imgs), "--json", str(out)], capsys)
    assert rc == 0 and "lines 1" in stdout, err
    res = json.loads(out.read_text())
    assert res["lines"] == 1 and res["skipped"] == 1
    skipped = [ln for ln in err.splitlines() if ln.startswith("skipped:")]
    assert len(skipped) == 1 and "flat: line image too wide" in skipped[0], err


def test_read_records_and_load_lineset_take_the_images_folder(page, tmp_path):
    xml, imgs = page
    records, errors = read_records(str(xml), images_dir=str(imgs))
    assert [r.text for r in records] == ["abc", "xyz"] and not errors
    lines = load_lineset(str(xml), 48, progress=False, images_dir=str(imgs))
    assert lines.texts == ["abc"] and len(lines.skipped) == 1 and "too wide" in lines.skipped[0]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("image\ttext\n")
    with pytest.raises(ConfigError, match="--images .*only PAGE-XML"):
        read_records(str(tsv), images_dir=str(imgs))


def test_recognize_warns_about_images_that_are_no_line(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((60, 400), 255, np.uint8)).save(blank)
    rc, out, err = run(["recognize", str(blank), str(SAMPLE), "--json"], capsys)
    assert rc == 0, err
    items = {Path(d["input"]).name: d for d in json.loads(out)}
    assert any("no ink found" in w for w in items["blank.png"]["warnings"])
    assert "warnings" not in items[SAMPLE.name]  # an ordinary line: no warnings key
    warned = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {blank}: no ink found"), err
    r = load().recognize(str(blank))
    assert r.warnings and r.to_dict()["warnings"] == r.warnings


def test_too_wide_files_are_refused_naming_the_file(tmp_path, capsys):
    wide = tmp_path / "wide.png"
    a = np.full((2, 20_000), 255, np.uint8)
    a[:, ::5] = 0
    Image.fromarray(a).save(wide)
    with pytest.raises(InputTooLargeError, match=f"{wide}: line image too wide"):
        load().prepare_input(str(wide))
    rc, _, err = run(["recognize", str(wide)], capsys)
    assert rc == 2 and f"{wide}: line image too wide" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputTooLargeError, match="image too large"):
        load(max_pixels=100).recognize(np.zeros((20, 20), np.uint8))
    with pytest.raises(InputTooLargeError, match="too wide"):  # the API's own width limit
        load(max_width=500).recognize(np.full((40, 1000), 200, np.uint8))
