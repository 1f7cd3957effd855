import argparse
import json

import cv2
import numpy as np
import pytest
import torch
from lxml import etree

from inkpack.errors import InputError
from inkpack.cli.pages import add_segment_parser as add_parsers
from inkpack.segment.model import SegNet, default_config, save_segmenter
from inkpack.segment.output import PAGE_NS


def run(argv):
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers(dest="command"))
    a = p.parse_args(argv)
    return a.fn(a)


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    save_segmenter(SegNet((4, 8, 8, 8)), default_config(128, (4, 8, 8, 8)), tmp_path / "seg")
    pages = tmp_path / "pages"
    pages.mkdir()
    img = np.full((160, 120), 200, np.uint8)
    cv2.line(img, (10, 50), (100, 52), 30, 2)
    cv2.imwrite(str(pages / "a.png"), img)
    (pages / "b.png").write_bytes(b"not an image")
    return tmp_path


def test_one_page_to_pagexml_file(setup):
    out = setup / "a.xml"
    assert run(["segment", str(setup / "pages" / "a.png"), "--seg-model", str(setup / "seg"), "--out", str(out)]) == 0
    page = etree.parse(str(out)).getroot().find(f"{{{PAGE_NS}}}Page")
    assert (page.get("imageWidth"), page.get("imageHeight"), page.get("imageFilename")) == ("120", "160", "a.png")


def test_folder_reports_and_skips_a_bad_page(setup, capsys):
    rc = run(["segment", str(setup / "pages"), "--seg-model", str(setup / "seg"), "--out", str(setup / "out"),
              "--format", "json"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "page skipped" in err and "Traceback" not in err
    doc = json.loads((setup / "out" / "a.json").read_text())
    assert (doc["width"], doc["height"]) == (120, 160) and isinstance(doc["lines"], list)
    assert not (setup / "out" / "b.json").exists()


def test_bad_invocations_are_one_line_errors(setup):
    with pytest.raises(InputError, match="needs --recognize"):
        run(["segment", str(setup / "pages" / "a.png"), "--format", "text"])
    with pytest.raises(InputError, match="folder is needed"):
        run(["segment", str(setup / "pages"), "--seg-model", str(setup / "seg")])
    with pytest.raises(InputError, match="overwritten"):
        run(["segment", str(setup / "pages"), "--seg-model", str(setup / "seg"), "--out", str(setup / "pages")])
    with pytest.raises(InputError, match="missing.png: file not found"):
        run(["segment", str(setup / "missing.png")])
