from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_tsv, render_text, shared_path
from inkpack.data.formats.iam import read_iam_lines
from inkpack.data.formats.pagexml import crop_polygon, read_pagexml_source
from inkpack.data.formats.tsv import read_tsv
from inkpack.data.lines import load_lineset
from inkpack.errors import InkpackError


def test_tsv_paths_are_relative_to_the_manifest_and_bad_rows_reported(tmp_path):
    path = make_tsv(tmp_path, ["one", "two"])
    with open(path, "a", encoding="utf-8") as f:
        f.write("img/line0.png\n")  # missing column
        f.write("img/line1.png\t   \n")  # empty transcription
    recs, errs = read_tsv(str(path))
    assert [r.text for r in recs] == ["one", "two"]
    assert recs[0].path == str(tmp_path / "img" / "line0.png")
    assert len(errs) == 2
    assert "data.tsv:4: missing text column" in errs[0]
    assert "data.tsv:5: empty transcription" in errs[1]


def test_tsv_header_and_missing_file(tmp_path):
    with pytest.raises(InkpackError, match="file not found"):
        read_tsv(str(tmp_path / "none.tsv"))
    bad = tmp_path / "bad.tsv"
    bad.write_text("path\ttranscript\nx.png\ty\n")
    with pytest.raises(InkpackError, match="bad.tsv:1: expected header"):
        read_tsv(str(bad))


def test_lineset_skips_and_counts_bad_images(tmp_path):
    path = make_tsv(tmp_path, ["good line", "broken"])
    (tmp_path / "img" / "line1.png").write_bytes(b"garbage")
    ls = load_lineset(str(path), 32, progress=False)
    assert ls.texts == ["good line"]
    assert len(ls.skipped) == 1 and "line1.png" in ls.skipped[0]
    assert ls.images[0].shape[0] == 32 and ls.images[0].dtype == np.uint8


def _page(tmp_path: Path) -> Path:
    page = np.full((200, 300), 210, np.uint8)
    page[20:60, 20:280] = np.asarray(render_text("first line", 40).resize((260, 40)))
    page[100:140, 20:280] = np.asarray(render_text("second", 40).resize((260, 40)))
    Image.fromarray(page).save(tmp_path / "p1.png")
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">
 <Page imageFilename="p1.png" imageWidth="300" imageHeight="200">
  <TextRegion id="r1"><Coords points="0,0 300,0 300,200 0,200"/>
   <TextLine id="l1"><Coords points="20,20 280,20 280,60 20,60"/>
     <Word id="w1"><TextEquiv><Unicode>first</Unicode></TextEquiv></Word>
     <TextEquiv><Unicode>first line</Unicode></TextEquiv></TextLine>
   <TextLine id="l2"><Coords points="20,100 280,100 280,140 20,140"/>
     <TextEquiv><Unicode>second</Unicode></TextEquiv></TextLine>
   <TextLine id="l3"><Coords points="20,150 21,150"/><TextEquiv><Unicode>bad</Unicode></TextEquiv></TextLine>
  </TextRegion></Page></PcGts>"""
    (tmp_path / "p1.xml").write_text(xml, encoding="utf-8")
    return tmp_path / "p1.xml"


def test_pagexml_crops_lines_by_polygon(tmp_path):
    recs, errs = read_pagexml_source(str(_page(tmp_path)))
    assert [r.text for r in recs] == ["first line", "second"]  # line-level text, not the word's
    assert recs[0].crop.shape == (41, 261)
    assert len(errs) == 1 and "TextLine l3" in errs[0]


def test_crop_polygon_fills_outside_with_inside_median():
    page = np.full((10, 10), 50, np.uint8)
    page[0:5, :] = 200  # upper half is another colour
    tri = np.array([[0, 9], [9, 9], [9, 5]], float)  # a triangle in the lower half
    crop = crop_polygon(page, tri)
    assert crop.shape == (5, 10)
    assert (crop == 50).all()  # the 200s above the triangle were replaced by its median


def test_pagexml_malformed(tmp_path):
    (tmp_path / "x.xml").write_text("<PcGts><Page", encoding="utf-8")
    with pytest.raises(InkpackError, match="x.xml: malformed XML"):
        read_pagexml_source(str(tmp_path / "x.xml"))


def test_real_hooker_pages_match_the_line_manifest():
    pages = shared_path("data", "hooker", "pages")
    recs, errs = read_pagexml_source(str(pages))
    train = dict(
        l.rstrip("\n").split("\t", 1) for l in open(pages.parent / "train.tsv", encoding="utf-8")
    )
    assert len(recs) > 50 and not errs
    for r in recs:
        assert train[f"lines/{r.id}.jpg"] == r.text


def test_iam_layout(tmp_path):
    (tmp_path / "ascii").mkdir()
    d = tmp_path / "lines" / "a01" / "a01-000u"
    d.mkdir(parents=True)
    render_text("A MOVE").save(d / "a01-000u-00.png")
    (tmp_path / "ascii" / "lines.txt").write_text(
        "#--- comment\n"
        "a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE\n"
        "a01-000u-01 err 156 19 395 932 1850 105\n",
        encoding="utf-8",
    )
    recs, errs = read_iam_lines(str(tmp_path / "ascii" / "lines.txt"))
    assert [r.text for r in recs] == ["A MOVE"]
    assert recs[0].path == str(d / "a01-000u-00.png")
    assert len(errs) == 1 and "lines.txt:3" in errs[0]
    ls = load_lineset(str(tmp_path / "ascii" / "lines.txt"), 32, progress=False)
    assert ls.texts == ["A MOVE"]
