"""The HTTP service: every endpoint, every error path, recovery, and dynamic batching."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import line_png, make_ink_model, make_line_model
from fastapi.testclient import TestClient
from lxml import etree
from PIL import Image

from inkpack.api import load
from inkpack.data.formats.pagexml import crop_polygon
from inkpack.deploy.batching import DynamicBatcher
from inkpack.deploy.server import create_app
from inkpack.errors import InkpackError

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_line_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def recs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ink")
    return load(str(tiny_model)), load(str(make_ink_model(root, "lstm-char")))


@pytest.fixture(scope="module")
def client(recs):
    app = create_app(recs[0], recs[1], max_upload_bytes=200_000, max_pixels=400_000, max_ink_points=500)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _png_file(png: bytes, name: str = "line.png", ctype: str = "image/png"):
    return {"file": (name, png, ctype)}


def _err(r, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and fragment in body["error"], body


def test_line_multipart_and_raw_match_api(client, recs):
    png = line_png("hello world")
    expected = recs[0].recognize(png).to_dict()
    for r in (client.post("/v1/recognize/line", files=_png_file(png)),
              client.post("/v1/recognize/line", content=png, headers={"content-type": "image/png"})):
        assert r.status_code == 200
        body = r.json()
        assert body["text"] == expected["text"] and body["positions"] == expected["positions"]
        assert np.allclose(body["confidences"], expected["confidences"], atol=1e-6)


def test_line_jpeg_and_tiff(client, recs):
    img = Image.open(io.BytesIO(line_png("tea")))
    for fmt, ctype in (("JPEG", "image/jpeg"), ("TIFF", "image/tiff")):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        r = client.post("/v1/recognize/line", files=_png_file(buf.getvalue(), "x", ctype))
        assert r.status_code == 200 and r.json()["text"] == recs[0].recognize(buf.getvalue()).text


def test_ink_json_and_inkml(client, recs):
    from inkpack.data.formats.inkml import inkml_bytes
    from inkpack.data.ink import Ink

    strokes = [[[0, 0, 0], [30, 2, 16], [60, 1, 32]], [[10, -20, 80], [12, 30, 96]]]
    expected = recs[1].recognize(Ink([np.array(s, float) for s in strokes]))
    r = client.post("/v1/recognize/ink", json={"strokes": strokes})
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "char" and body["text"] == expected.text
    assert [c["text"] for c in body["candidates"]] == [c for c, _ in expected.candidates]
    xml = inkml_bytes([Ink([np.array(s, float) for s in strokes])])
    r2 = client.post("/v1/recognize/ink", content=xml, headers={"content-type": "application/inkml+xml"})
    assert r2.status_code == 200 and r2.json()["candidates"] == body["candidates"]


def _page(texts: list[str]) -> tuple[bytes, bytes, list[np.ndarray], np.ndarray]:
    lines = [Image.open(io.BytesIO(line_png(t, height=40))) for t in texts]
    w = max(im.width for im in lines) + 40
    page = Image.new("L", (w, 60 * len(lines) + 20), 230)
    polys = []
    for i, im in enumerate(lines):
        y = 20 + 60 * i
        page.paste(im, (20, y))
        polys.append(np.array([[18, y - 2], [22 + im.width, y - 2], [22 + im.width, y + 42], [18, y + 42]], float))
    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap={None: PAGE_NS})
    pg = etree.SubElement(root, f"{{{PAGE_NS}}}Page", imageFilename="page.png",
                          imageWidth=str(page.width), imageHeight=str(page.height))
    reg = etree.SubElement(pg, f"{{{PAGE_NS}}}TextRegion", id="r1")
    for i, p in enumerate(polys):
        tl = etree.SubElement(reg, f"{{{PAGE_NS}}}TextLine", id=f"l{i}")
        etree.SubElement(tl, f"{{{PAGE_NS}}}Coords", points=" ".join(f"{int(x)},{int(y)}" for x, y in p))
    etree.SubElement(etree.SubElement(reg, f"{{{PAGE_NS}}}TextLine", id="bad"), f"{{{PAGE_NS}}}Coords",
                     points="5,5 6,5")  # too few points: reported, left alone
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    return buf.getvalue(), etree.tostring(root, xml_declaration=True, encoding="UTF-8"), polys, np.asarray(page)


def test_page_fills_textequiv(client, recs):
    png, xml, polys, gray = _page(["hello there", "kew"])
    r = client.post("/v1/recognize/page", files={"image": ("p.png", png, "image/png"),
                                                 "xml": ("p.xml", xml, "application/xml")})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert r.headers["x-inkpack-lines"] == "2" and r.headers["x-inkpack-skipped"] == "1"
    root = etree.fromstring(r.content)
    got = [u.text or "" for u in root.iter(f"{{{PAGE_NS}}}Unicode")]
    assert got == [recs[0].recognize(crop_polygon(gray, p)).text for p in polys]


def test_health_models_docs_and_web(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["line_model"] == "tiny" and h["ink_model"] == "lstm-char"
    m = client.get("/v1/models").json()
    assert m["line"]["width_factor"] == 4 and m["ink"]["kind"] == "char"
    spec = client.get("/openapi.json").json()
    assert {"/v1/recognize/line", "/v1/recognize/ink", "/v1/recognize/page", "/health", "/v1/models"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/recognize/line"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="pad"' in page.text and "http" not in page.text.split("<body>")[0]
    for f in ("app.js", "style.css"):
        assert client.get(f"/web/{f}").status_code == 200


def test_error_paths_then_still_serving(client):
    png = line_png("hello")
    big = np.full((700, 700), 200, np.uint8)  # 490,000 pixels > 400,000, small as a PNG
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    cases = [
        # 413: body over the limit (declared length, and a chunked body without a length)
        (client.post("/v1/recognize/line", content=b"\0" * 300_000, headers={"content-type": "image/png"}), 413, "limit"),
        (client.post("/v1/recognize/line", content=iter([b"\x89PNG\r\n\x1a\n" + b"\0" * 150_000] * 2),
                     headers={"content-type": "image/png"}), 413, "limit"),
        (client.post("/v1/recognize/line", files=_png_file(buf.getvalue())), 413, "pixels"),
        (client.post("/v1/recognize/ink", json={"strokes": [[[i, i] for i in range(600)]]}), 413, "points"),
        # 415: wrong content types
        (client.post("/v1/recognize/line", content=b"hello", headers={"content-type": "text/plain"}), 415, "content type"),
        (client.post("/v1/recognize/line", files=_png_file(b"GIF89a\0\0", "a.gif", "image/gif")), 415, "image/gif"),
        (client.post("/v1/recognize/line", files=_png_file(b"BM\0\0\0", "a.bmp", "application/octet-stream")), 415, "PNG"),
        (client.post("/v1/recognize/ink", content=b"1,2", headers={"content-type": "text/csv"}), 415, "application/json"),
        (client.post("/v1/recognize/page", content=png, headers={"content-type": "image/png"}), 415, "multipart"),
        # 422: malformed bodies
        (client.post("/v1/recognize/line", files={"other": ("a.png", png, "image/png")}), 422, "'file' is missing"),
        (client.post("/v1/recognize/line", files=_png_file(b"\x89PNG\r\n\x1a\n garbage")), 422, "PNG"),
        (client.post("/v1/recognize/line", files=_png_file(b"not a png at all", "a.png", "image/png")), 422, "PNG"),
        (client.post("/v1/recognize/line", content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data; boundary=xx"}), 422, ""),
        (client.post("/v1/recognize/ink", content=b"{not json", headers={"content-type": "application/json"}), 422, "JSON"),
        (client.post("/v1/recognize/ink", json={"lines": []}), 422, "strokes"),
        (client.post("/v1/recognize/ink", json={"strokes": [[[0, 0], [1]]]}), 422, "[x, y]"),
        (client.post("/v1/recognize/ink", json={"strokes": [[[0, "a"]]]}), 422, "finite"),
        (client.post("/v1/recognize/ink", content=b"<ink><trace>1 2,", headers={"content-type": "application/inkml+xml"}), 422, "InkML"),
        (client.post("/v1/recognize/page", files={"image": ("p.png", png, "image/png"), "xml": ("p.xml", b"<oops", "text/xml")}), 422, "XML"),
        (client.post("/v1/recognize/page?format=alto", files={"image": ("p.png", png, "image/png")}), 422, "format"),
        # 404 / 405
        (client.get("/v1/nothing"), 404, "/v1/nothing"),
        (client.get("/v1/recognize/line"), 405, "GET"),
    ]
    for r, status, fragment in cases:
        _err(r, status, fragment)
    _, xml, _, _ = _page(["a"])
    _err(client.post("/v1/recognize/page", files={"image": ("p.png", png, "image/png"), "xml": ("p.xml", xml, "text/xml")}),
         422, "uploaded image")
    ok = client.post("/v1/recognize/line", files=_png_file(png))
    assert ok.status_code == 200 and "text" in ok.json()


def test_missing_ink_model_is_a_clear_404(recs):
    with TestClient(create_app(recs[0])) as c:
        _err(c.post("/v1/recognize/ink", json={"strokes": [[[0, 0], [1, 1]]]}), 404, "--ink-model")
        assert c.get("/v1/models").json()["ink"] is None


def test_concurrent_requests_share_forward_passes(recs):
    app = create_app(recs[0], max_batch=8, max_wait_ms=300)
    png = line_png("hello world")  # equal widths: batching must not change a single digit
    expected = recs[0].recognize(png).to_dict()
    out, barrier = [None] * 8, threading.Barrier(8)
    with TestClient(app) as c:
        def one(i):
            barrier.wait()
            out[i] = c.post("/v1/recognize/line", files=_png_file(png)).json()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = c.get("/health").json()["batching"]["line"]
    assert time.monotonic() - t0 < 30
    assert stats["items"] == 8 and stats["max_batch_size"] > 1 and stats["batches"] < 8
    for body in out:
        assert body["text"] == expected["text"]
        assert np.allclose(body["confidences"], expected["confidences"], atol=1e-5)


def test_batcher_groups_and_isolates_failures():
    seen = []

    def run(items):
        seen.append(len(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    b = DynamicBatcher(run, max_batch=4, max_wait_ms=200)
    futs = [b.submit(x) for x in ["a", "b", "bad", "c", "d", "e"]]
    results = []
    for f in futs:
        try:
            results.append(f.result(timeout=10))
        except ValueError:
            results.append("error")
    b.close()
    assert results == ["A", "B", "error", "C", "D", "E"]
    assert seen[0] == 4  # the first four waited for each other
    assert b.stats()["max_batch_size"] == 4


def test_model_roles(recs, tmp_path, monkeypatch):
    monkeypatch.setenv("INKPACK_MODELS", str(tmp_path))  # no bundled model here
    app = create_app(None, recs[1])  # ink only: the line endpoint explains itself
    with TestClient(app) as c:
        _err(c.post("/v1/recognize/line", files=_png_file(line_png("a"))), 404, "--model")
        assert c.post("/v1/recognize/ink", json={"strokes": [[[0, 0], [9, 1]]]}).status_code == 200
    assert create_app(recs[1]).state.ink is recs[1]  # an ink model given as `model` serves ink
    with pytest.raises(InkpackError, match="not found"):
        create_app(None)
    with pytest.raises(InkpackError, match="image model"):
        create_app(recs[0], recs[0])


def test_service_decodes_lines_with_its_decoder(tmp_path):
    """`serve --decoder beam+lm`: the line endpoint answers the decoder's text, as the API does."""
    from inkpack.cli import build_parser
    from inkpack.decode.lm import CharNgramLM
    from inkpack.cli.deploy import cmd_serve

    sample = Path(__file__).resolve().parents[2] / "samples" / "hooker" / "JDH_2_16_39_002_r2l11.jpg"
    lm_path = tmp_path / "lm.arpa"
    CharNgramLM.train(["& Co is furious. If danger"] * 20, order=4).save(str(lm_path))
    opts = {"kind": "beam+lm", "lm": str(lm_path), "alpha": 2.0, "beam": 8}
    want = load(decoder=opts).recognize(str(sample)).text
    greedy = load(decoder="greedy").recognize(str(sample)).text
    assert want != greedy  # the strong LM changes this line's reading: the check below can fail
    with TestClient(create_app(decoder=opts)) as c:
        assert c.get("/v1/models").json()["line"]["decoder"] == "beam+lm"
        got = c.post("/v1/recognize/line", files=_png_file(sample.read_bytes(), "l.jpg", "image/jpeg")).json()
    # the decoder's text, with confidences from the best path that reads it
    assert got["text"] == want and len(got["confidences"]) == len(want) == len(got["positions"])
    with TestClient(create_app(decoder="greedy")) as c:  # greedy, with its alignment
        got = c.post("/v1/recognize/line", files=_png_file(sample.read_bytes(), "l.jpg", "image/jpeg")).json()
        assert got["text"] == greedy and c.get("/v1/models").json()["line"]["decoder"] == "greedy"
    with TestClient(create_app()) as c:  # no decoder: the model's own, as inkpack.load() reads
        got = c.post("/v1/recognize/line", files=_png_file(sample.read_bytes(), "l.jpg", "image/jpeg")).json()
        assert got["text"] == load().recognize(str(sample)).text
        assert c.get("/v1/models").json()["line"]["decoder"] == "beam+lm"
    # the serve command's flags build the decoder; beam+lm without --lm is a one-line error
    args = build_parser().parse_args(["serve", "--decoder", "beam+lm"])
    with pytest.raises(InkpackError, match="needs --lm"):
        cmd_serve(args)
