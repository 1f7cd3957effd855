"""inkpack's PAGE-XML and ALTO validate against the bundled official schemas (PAGE 2019-07-15,
ALTO 4.2 with the LoC xlink schema it imports), checked offline with ``lxml.etree.XMLSchema``."""

import numpy as np
import pytest
from lxml import etree
from scan_pages import draw_page

from inkpack.cli import main
from inkpack.segment.output import page_to_alto, page_to_pagexml
from inkpack.segment.page import Glyph
from inkpack.segment.postprocess import Line
from inkpack.segment.validate import schema, schema_errors

SIZE = (300, 200)


def _lines():
    return [Line(np.array([[10.0, 50.0], [200.0, 52.0]]), np.array([[5.0, 20.0], [205, 20], [205, 60], [5, 60]]),
                 region=0, order=0),
            Line(np.array([[12.0, 120.0], [150.0, 118.0]]), np.array([[8.0, 90.0], [160, 90], [160, 130], [8, 130]]),
                 region=1, order=1)]


GLYPHS = [[Glyph("a", 0.9, 10, 20), Glyph("b", 0.7, 20, 30), Glyph(" ", 0.99, 30, 40), Glyph("c", 0.5, 40, 55)],
          []]   # the second line without per-character results (e.g. a beam decoder's text)

CASES = {
    "segment-only": dict(lines=_lines()),
    "recognized": dict(lines=_lines(), texts=["ab c", "x y"], confidences=[0.8, 0.6]),
    "recognized-with-glyphs": dict(lines=_lines(), texts=["ab c", "x y"], confidences=[0.8, 0.6], glyphs=GLYPHS),
    "empty-line-texts": dict(lines=_lines(), texts=["", "  "], confidences=[0.0, 0.1],
                             glyphs=[[], [Glyph(" ", 0.9, 20, 30), Glyph(" ", 0.8, 30, 40)]]),
    "empty-page": dict(lines=[]),
    "empty-page-recognized": dict(lines=[], texts=[], confidences=[]),
    "turned-page": dict(lines=_lines(), texts=["ab c", "x y"], confidences=[0.8, 0.6], glyphs=GLYPHS, turns=1),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["page", "alto"])
def test_outputs_validate(case, kind):
    c = dict(CASES[case])
    lines = c.pop("lines")
    size = SIZE[::-1] if c.get("turns", 0) % 2 else SIZE   # a turned page: the image is the other way round
    doc = (page_to_pagexml if kind == "page" else page_to_alto)(lines, size, **c)
    assert schema_errors(doc, kind) == []


def test_the_schemas_are_not_vacuous():
    doc = page_to_pagexml(_lines(), SIZE, ["ab c", "x y"], [0.8, 0.6], glyphs=GLYPHS)
    root = etree.fromstring(doc)
    page = root.find("{*}Page")
    del page.attrib["imageWidth"]                       # required by PAGE
    assert any("imageWidth" in e for e in schema_errors(etree.tostring(root), "page"))
    root = etree.fromstring(page_to_alto(_lines(), SIZE, ["ab c", "x y"], [0.8, 0.6], glyphs=GLYPHS))
    root.find(".//{*}String").set("WC", "1.5")          # ALTO: word confidence in [0, 1]
    assert any("WC" in e for e in schema_errors(etree.tostring(root), "alto"))
    glyph = root.find(".//{*}Glyph")
    glyph.set("CONTENT", "ab")                          # ALTO: one character per Glyph
    assert schema("alto").validate(root) is False


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    draw_page(root / "a.png")
    from PIL import Image

    Image.new("L", (600, 400), 230).save(root / "blank.png")
    return root


@pytest.mark.parametrize("fmt,kind", [("page", "page"), ("alto", "alto")])
def test_cli_outputs_validate_segmented_recognized_and_blank(scans, tmp_path, fmt, kind):
    for name in ("a.png", "blank.png"):
        for extra in ([], ["--recognize"]):
            out = tmp_path / f"{name}{len(extra)}.{fmt}.xml"
            assert main(["segment", str(scans / name), "--format", fmt, "--out", str(out), *extra]) == 0
            assert schema_errors(out.read_bytes(), kind) == [], (name, extra)
    out = tmp_path / "r.xml"
    assert main(["recognize", str(scans / "a.png"), "--page", "--format", fmt, "--out", str(out)]) == 0
    assert schema_errors(out.read_bytes(), kind) == []
