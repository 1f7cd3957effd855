"""Bad pages through the command line and the service: not an image, an empty file, a huge image
give one line and exit 2 (HTTP 4xx); a blank sheet an empty valid PAGE-XML; a page scanned
sideways is found and read upright (upside down with ``--check-180``), its coordinates given in
the scan's own pixels and its ``orientation`` in the PAGE-XML."""

import io

import numpy as np
import pytest
from lxml import etree
from PIL import Image
from scan_pages import TEXTS, draw_page

from inkpack.cli import main
from inkpack.segment.output import PAGE_NS
from inkpack.segment.validate import schema_errors


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    ys = draw_page(root / "a.png")                       # 900 x 600, three lines
    img = Image.open(root / "a.png")
    img.rotate(90, expand=True).save(root / "r90.png")   # anticlockwise: 600 wide, 900 high
    img.rotate(180).save(root / "r180.png")
    img.rotate(270, expand=True).save(root / "r270.png")
    Image.new("L", (600, 400), 230).save(root / "blank.png")
    (root / "text.png").write_bytes(b"hello, not an image")
    (root / "empty.jpg").write_bytes(b"")
    Image.new("L", (8000, 5001), 230).save(root / "huge.png")   # over the 40 M pixel limit
    return root, ys


@pytest.mark.parametrize("name,words", [("text.png", "not an image"), ("empty.jpg", "empty"),
                                        ("huge.png", "too large")])
def test_bad_files_are_one_line_errors(scans, tmp_path, capsys, name, words):
    root, _ = scans
    for argv in (["segment", str(root / name)], ["segment", str(root / name), "--recognize"],
                 ["recognize", str(root / name), "--page"]):
        assert main([*argv, "--out", str(tmp_path / "o.xml")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and words in err[0].lower(), err
        assert not (tmp_path / "o.xml").exists()


def test_blank_sheet_is_an_empty_valid_page(scans, tmp_path):
    root, _ = scans
    out = tmp_path / "b.xml"
    assert main(["segment", str(root / "blank.png"), "--recognize", "--out", str(out)]) == 0
    doc = out.read_bytes()
    assert schema_errors(doc, "page") == [] and b"TextLine" not in doc


def _baselines(doc: bytes) -> list[np.ndarray]:
    return [np.array([[float(v) for v in p.split(",")] for p in b.get("points").split()])
            for b in etree.fromstring(doc).iter(f"{{{PAGE_NS}}}Baseline")]


@pytest.mark.parametrize("name,orientation,extra", [("r90.png", "90", []), ("r270.png", "-90", []),
                                                    ("r180.png", "180", ["--check-180"])])
def test_turned_scan_is_read_upright_in_its_own_coordinates(scans, tmp_path, capsys, name, orientation, extra):
    root, ys = scans
    up, turned = tmp_path / "up.xml", tmp_path / "t.xml"
    assert main(["segment", str(root / "a.png"), "--recognize", "--out", str(up)]) == 0
    assert main(["segment", str(root / name), "--recognize", "--out", str(turned), *extra]) == 0
    assert "not upright" in capsys.readouterr().err
    doc = turned.read_bytes()
    assert schema_errors(doc, "page") == []
    page = etree.fromstring(doc).find(f"{{{PAGE_NS}}}Page")
    assert page.get("orientation") == orientation
    w, h = Image.open(root / name).size
    assert (page.get("imageWidth"), page.get("imageHeight")) == (str(w), str(h))
    text = lambda d: [e.text for e in etree.fromstring(d).iter(f"{{{PAGE_NS}}}Unicode")]  # noqa: E731
    assert text(doc) == text(up.read_bytes())           # same reading, same order
    bases = _baselines(doc)
    assert len(bases) == len(TEXTS)
    for b, y in zip(bases, ys):   # each baseline where the turned scan shows it
        if name == "r90.png":     # a point (x, y) of the page is at (y, 899 - x) in this scan
            assert abs(b[:, 0].mean() - y) < 8 and np.ptp(b[:, 1]) > 300
        elif name == "r270.png":  # ... at (599 - y, x)
            assert abs(b[:, 0].mean() - (599 - y)) < 8 and np.ptp(b[:, 1]) > 300
        else:                     # ... at (899 - x, 599 - y)
            assert abs(b[:, 1].mean() - (599 - y)) < 8 and np.ptp(b[:, 0]) > 300


def test_upside_down_without_check_180_still_gives_a_valid_page(scans, tmp_path):
    root, _ = scans
    out = tmp_path / "u.xml"
    assert main(["segment", str(root / "r180.png"), "--recognize", "--out", str(out)]) == 0
    doc = out.read_bytes()
    assert schema_errors(doc, "page") == []
    assert etree.fromstring(doc).find(f"{{{PAGE_NS}}}Page").get("orientation") is None


def test_service_reads_a_sideways_page_and_refuses_bad_bytes(scans, tmp_path):
    from fastapi.testclient import TestClient

    from inkpack.api import load
    from inkpack.deploy.server import create_app
    from inkpack.testing import make_line_model

    root, ys = scans
    app = create_app(load(str(make_line_model(tmp_path))))
    with TestClient(app, raise_server_exceptions=False) as c:
        png = (root / "r90.png").read_bytes()
        r = c.post("/v1/recognize/page", files={"image": ("p.png", png, "image/png")})
        assert r.status_code == 200 and schema_errors(r.content, "page") == []
        assert etree.fromstring(r.content).find(f"{{{PAGE_NS}}}Page").get("orientation") == "90"
        doc = c.post("/v1/recognize/page?format=json", files={"image": ("p.png", png, "image/png")}).json()
        assert doc["orientation"] == 90 and (doc["width"], doc["height"]) == (600, 900)
        for ln, y in zip(doc["lines"], ys):
            assert abs(np.array(ln["baseline"])[:, 0].mean() - y) < 8
        for body in (b"", b"hello, not an image"):
            r = c.post("/v1/recognize/page", files={"image": ("p.png", body, "image/png")})
            assert 400 <= r.status_code < 500 and "\n" not in r.json()["error"]
        buf = io.BytesIO()
        Image.new("L", (600, 400), 230).save(buf, format="PNG")
        r = c.post("/v1/recognize/page", files={"image": ("p.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200 and schema_errors(r.content, "page") == []
