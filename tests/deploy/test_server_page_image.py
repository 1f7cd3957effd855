"""``POST /v1/recognize/page`` with a page image alone: segmented by the shipped segmenter, each
line read; PAGE-XML, or JSON with ``?format=json``; limits as 413, bad options as 422."""

from __future__ import annotations

import io

import numpy as np
import pytest
from deploy_helpers import make_line_model
from fastapi.testclient import TestClient
from lxml import etree
from PIL import Image, ImageDraw, ImageFont

from inkpack.api import load
from inkpack.deploy.server import create_app

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def scan() -> tuple[bytes, list[float]]:
    """Three dark text lines on light paper; each baseline's y from the font's ascent."""
    font = ImageFont.load_default(size=28)
    img = Image.new("L", (900, 600), 225)
    for i, t in enumerate(["Dear Sir I have the honour", "to send you the plants", "from the garden at Kew"]):
        ImageDraw.Draw(img).text((60, 80 + 120 * i), t, fill=25, font=font)
    return _png(img), [80 + 120 * i + font.getmetrics()[0] for i in range(3)]


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    return load(str(make_line_model(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module")
def client(line):
    with TestClient(create_app(line), raise_server_exceptions=False) as c:
        yield c


def _post(c, png, query: str = "", **extra):
    return c.post("/v1/recognize/page" + query, files={"image": ("p.png", png, "image/png"), **extra})


def test_image_alone_gives_pagexml_lines_top_to_bottom(client, scan):
    png, ys = scan
    r = _post(client, png)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    page = etree.fromstring(r.content).find(f"{{{PAGE_NS}}}Page")
    assert (page.get("imageWidth"), page.get("imageHeight")) == ("900", "600")
    lines = list(page.iter(f"{{{PAGE_NS}}}TextLine"))
    base_y = [np.mean([float(p.split(",")[1]) for p in ln.find(f"{{{PAGE_NS}}}Baseline").get("points").split()])
              for ln in lines]
    assert len(lines) == 3
    np.testing.assert_allclose(base_y, ys, atol=6)  # in reading order, where the font drew them
    confs = [float(ln.find(f"{{{PAGE_NS}}}TextEquiv").get("conf")) for ln in lines]
    assert all(0.0 <= c <= 1.0 for c in confs)


def test_image_alone_as_json(client, scan):
    png, ys = scan
    r = _post(client, png, "?format=json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert (doc["width"], doc["height"], len(doc["lines"])) == (900, 600, 3)
    for ln, y in zip(doc["lines"], ys):
        poly, base = np.array(ln["polygon"]), np.array(ln["baseline"])
        assert abs(base[:, 1].mean() - y) < 6 and poly[:, 1].min() < y < poly[:, 1].max()
        assert isinstance(ln["text"], str) and 0.0 <= ln["confidence"] <= 1.0
    assert [ln["order"] for ln in doc["lines"]] == [0, 1, 2]


def test_blank_sheet_is_an_empty_valid_page(client):
    png = _png(Image.new("L", (600, 400), 230))
    r = _post(client, png)
    assert r.status_code == 200
    page = etree.fromstring(r.content).find(f"{{{PAGE_NS}}}Page")
    assert page is not None and list(page.iter(f"{{{PAGE_NS}}}TextLine")) == []
    assert _post(client, png, "?format=json").json()["lines"] == []


def test_limits_and_bad_options(line, client, scan):
    png, _ = scan
    with TestClient(create_app(line, max_page_lines=2), raise_server_exceptions=False) as c:
        r = _post(c, png)
        assert r.status_code == 413 and "3 text lines" in r.json()["error"]
    with TestClient(create_app(line, max_pixels=100_000), raise_server_exceptions=False) as c:
        assert _post(c, png).status_code == 413
    r = _post(client, png, "?format=alto")
    assert r.status_code == 422 and "format" in r.json()["error"]
    r = _post(client, png, "?format=json", xml=("p.xml", b"<PcGts/>", "application/xml"))
    assert r.status_code == 422 and "format=json" in r.json()["error"]
    r = _post(client, b"not an image at all")
    assert r.status_code in (415, 422)
    assert _post(client, png).status_code == 200  # still serving
