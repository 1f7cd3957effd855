"""Service behaviour wired in by the integrator: line-width 413 from the header, warnings in
the line answer, several InkML samples in one ink request, the page line limit, serve flags."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from inkpack.api import Recognition, load
from inkpack.cli import build_parser, main
from inkpack.data.formats.inkml import inkml_bytes
from inkpack.data.ink import Ink
from inkpack.deploy.server import create_app


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


class CountingLine:
    """The bundled line model, counting its ``prepare_input`` calls (= images decoded)."""

    def __init__(self) -> None:
        self.inner = load()
        self.height, self.name, self.input_kind, self.decoder = self.inner.height, "bundled", "image", None
        self.prepared = 0

    def prepare_input(self, x):
        self.prepared += 1
        return self.inner.prepare_input(x)

    def run_prepared(self, items):
        return self.inner.run_prepared(items)

    def info(self) -> dict:
        return self.inner.info()


@pytest.fixture(scope="module")
def line():
    return CountingLine()


def test_too_wide_line_is_413_before_decoding_and_warnings_are_answered(line):
    flat = np.full((2, 3000), 255, np.uint8)  # 3000x2 px: 72,000 px wide at height 48
    flat[:, ::7] = 0
    blank = np.full((60, 400), 255, np.uint8)
    with TestClient(create_app(line), raise_server_exceptions=False) as c:
        r = c.post("/v1/recognize/line", content=_png(flat), headers={"content-type": "image/png"})
        assert r.status_code == 413 and "too wide" in r.json()["error"], r.text
        assert line.prepared == 0  # refused from the PNG header: never decoded
        r = c.post("/v1/recognize/line", content=_png(blank), headers={"content-type": "image/png"})
        assert r.status_code == 200 and line.prepared == 1
        assert any("no ink found" in w for w in r.json()["warnings"]), r.json()


class StubInk:
    name, input_kind, decoder = "stub-ink", "ink", None

    def prepare_input(self, sample):
        return sample

    def run_prepared(self, items):
        return [Recognition(f"{len(s.strokes)} strokes") for s in items]

    def info(self) -> dict:
        return {"name": self.name}


def _ink(n_strokes: int, sid: str) -> Ink:
    strokes = [np.array([[i * 10.0, 0, 0], [i * 10.0 + 5, 5, 10], [i * 10.0 + 9, 1, 20]]) for i in range(n_strokes)]
    return Ink(strokes, id=sid)


def test_inkml_of_several_samples_answers_every_sample(line):
    with TestClient(create_app(line, StubInk(), max_ink_points=10), raise_server_exceptions=False) as c:
        post = lambda body: c.post("/v1/recognize/ink", content=body,  # noqa: E731
                                   headers={"content-type": "application/inkml+xml"})
        r = post(inkml_bytes([_ink(1, "a"), _ink(2, "b")]))
        assert r.status_code == 200, r.text
        assert r.json() == {"model": "stub-ink", "kind": "ink", "samples": [
            {"id": "a", "text": "1 strokes", "confidences": [], "positions": [], "candidates": []},
            {"id": "b", "text": "2 strokes", "confidences": [], "positions": [], "candidates": []}]}
        one = post(inkml_bytes([_ink(3, "c")])).json()
        assert one["text"] == "3 strokes" and "samples" not in one  # one sample: the flat answer
        r = post(inkml_bytes([_ink(2, "a"), _ink(2, "b")]))  # 12 points in all, limit 10
        assert r.status_code == 413 and "12 points" in r.json()["error"], r.text


def _page(n_lines: int) -> bytes:
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    lines = "".join(f'<TextLine id="l{i}"><Coords points="10,{10 + 30 * i} 190,{10 + 30 * i} 190,{30 + 30 * i} '
                    f'10,{30 + 30 * i}"/></TextLine>' for i in range(n_lines))
    return (f'<PcGts xmlns="{ns}"><Page imageFilename="p.png" imageWidth="200" imageHeight="100">'
            f'<TextRegion id="r"><Coords points="0,0 200,0 200,100 0,100"/>{lines}</TextRegion>'
            f"</Page></PcGts>").encode()


def test_page_line_limit_is_a_service_option(line):
    img = _png(np.full((100, 200), 255, np.uint8))
    files = lambda: {"image": ("p.png", img, "image/png"), "xml": ("p.xml", _page(3), "application/xml")}  # noqa: E731
    with TestClient(create_app(line, max_page_lines=2), raise_server_exceptions=False) as c:
        r = c.post("/v1/recognize/page", files=files())
        assert r.status_code == 413 and "3 TextLines" in r.json()["error"], r.text
    with TestClient(create_app(line, max_page_lines=3), raise_server_exceptions=False) as c:
        r = c.post("/v1/recognize/page", files=files())
        assert r.status_code == 200 and r.headers["X-Inkpack-Lines"] == "3", r.text


def test_every_serve_flag_has_help_stating_its_default():
    sp = next(a for a in build_parser()._actions if a.dest == "command").choices["serve"]
    text = sp.format_help()
    bad = []
    for act in sp._actions:
        if not act.option_strings or act.dest == "help":
            continue
        after = text.split(f"\n  {act.option_strings[0]}", 1)[-1].split("\n  -", 1)[0]  # its own entry
        if not act.help or "default" not in after.lower():
            bad.append(act.option_strings[0])
    assert not bad, bad
    assert next(a for a in sp._actions if a.dest == "decoder").help == \
        "greedy | beam | beam+lm (default: greedy, or beam+lm when --lm is given)"


@pytest.mark.parametrize("argv,flag", [
    (["--port", "80000"], "--port"), (["--port", "http"], "--port"), (["--threads", "0"], "--threads"),
    (["--max-batch", "0"], "--max-batch"), (["--max-wait-ms", "-1"], "--max-wait-ms"),
    (["--max-upload-mb", "nan"], "--max-upload-mb"), (["--max-pixels", "0"], "--max-pixels"),
    (["--max-ink-points", "0"], "--max-ink-points"), (["--max-page-lines", "0"], "--max-page-lines"),
    (["--max-inflight", "-3"], "--max-inflight"), (["--read-timeout", "0"], "--read-timeout"),
    (["--beam", "0"], "--beam"), (["--alpha", "inf"], "--alpha"),
])
def test_bad_serve_values_are_one_line_naming_the_flag(argv, flag, capsys):
    for run in (main,):
        try:
            rc = run(["serve", *argv])
        except SystemExit as e:
            rc = int(e.code)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and flag in err and "Traceback" not in err, err


def test_serve_page_line_default_is_the_page_modules():
    from inkpack.cli.deploy import DEFAULT_MAX_LINES
    from inkpack.deploy.page import DEFAULT_MAX_LINES as PAGE_DEFAULT

    assert DEFAULT_MAX_LINES == PAGE_DEFAULT
    assert build_parser().parse_args(["serve"]).max_page_lines == PAGE_DEFAULT
