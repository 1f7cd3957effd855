"""Per-word and per-glyph confidences and positions in PAGE-XML and ALTO, from the CTC output of
the line recognizer: a stub network whose frame probabilities are set by hand goes through the
real ``Recognizer`` (greedy path: confidence = highest probability of the character over its
frames; frame f covers crop pixels [4f, 4f + 4)) and the page code, which moves the character
ranges from the crop to the page and writes them out."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lxml import etree

from inkpack.data.alphabet import Alphabet
from inkpack.infer.recognizer import Recognizer
from inkpack.segment.commands import render
from inkpack.segment.output import ALTO_NS, PAGE_NS, clip_x
from inkpack.segment.page import PageResult, read_lines
from inkpack.segment.postprocess import Line
from inkpack.segment.validate import schema_errors

ALPHABET = Alphabet(list("abc "))          # classes: 0 blank, 1 a, 2 b, 3 c, 4 space
# frame: (class, probability); the rest of each frame's mass is spread over the other classes
PATH = [(1, 0.9), (1, 0.6), (0, 0.8), (2, 0.7), (0, 0.9), (4, 0.8), (0, 0.9), (3, 0.5), (3, 0.55), (0, 0.9)]


class StubNet:
    """A backend stand-in: input height 32, 4 pixels per frame, fixed output."""

    height = 32
    alphabet = ALPHABET
    config = {"arch": "stub"}
    backend = "torch"
    model = SimpleNamespace(width_factor=4)

    def prepare(self, gray):
        assert gray.shape[0] == self.height   # the crop is already 32 rows: no resizing, scale 1
        return torch.zeros(1, self.height, gray.shape[1])

    def logits(self, tensors):
        p = np.full((len(PATH), 5), 0.0)
        for t, (c, q) in enumerate(PATH):
            p[t] = (1 - q) / 4
            p[t, c] = q
        lp = torch.tensor(np.log(p), dtype=torch.float32)[:, None].repeat(1, len(tensors), 1)
        return lp, torch.full((len(tensors),), len(PATH))


# the line: a rectangle x 100.4..160, y 50..81 -> crop x 100..160 (61 px), rows 50..81 (32)
POLY = np.array([[100.4, 50.0], [160.0, 50.0], [160.0, 81.0], [100.4, 81.0]])
LINE = Line(np.array([[101.0, 75.0], [159.0, 75.0]]), POLY)


@pytest.fixture(scope="module")
def page():
    gray = np.full((120, 200), 210, np.uint8)
    texts, confs, glyphs = read_lines(gray, [POLY], Recognizer(SimpleNamespace(logits=StubNet().logits, width_factor=4), StubNet.config, ALPHABET, preprocess=lambda g, _cfg: StubNet().prepare(g), height=32))  # noqa: E501
    return PageResult(200, 120, [LINE], texts, confs, "p.png", glyphs)


def test_greedy_path_gives_known_characters_confidences_and_page_ranges(page):
    assert page.texts == ["ab c"]
    g = page.glyphs[0]
    assert [c.char for c in g] == list("ab c")
    np.testing.assert_allclose([c.conf for c in g], [0.9, 0.7, 0.8, 0.55], atol=1e-6)  # max over its frames
    # frames a: 0-1, b: 3, space: 5, c: 7-8 -> crop x [0, 8), [12, 16), [20, 24), [28, 36); crop starts at x 100
    assert [(c.x0, c.x1) for c in g] == [(100, 108), (112, 116), (120, 124), (128, 136)]
    assert page.confidences[0] == pytest.approx(np.mean([0.9, 0.7, 0.8, 0.55]))


def _pts(s):
    return sorted(tuple(int(v) for v in p.split(",")) for p in s.split())


def test_pagexml_words_and_glyphs(page):
    doc = render(page, "page")
    assert schema_errors(doc, "page") == []
    tl = etree.fromstring(doc).find(f".//{{{PAGE_NS}}}TextLine")
    words = tl.findall(f"{{{PAGE_NS}}}Word")
    uni = lambda el: el.find(f"{{{PAGE_NS}}}TextEquiv/{{{PAGE_NS}}}Unicode").text  # noqa: E731
    conf = lambda el: float(el.find(f"{{{PAGE_NS}}}TextEquiv").get("conf"))  # noqa: E731
    coords = lambda el: _pts(el.find(f"{{{PAGE_NS}}}Coords").get("points"))  # noqa: E731
    assert [uni(w) for w in words] == ["ab", "c"]
    assert [conf(w) for w in words] == [pytest.approx(0.8), pytest.approx(0.55)]   # mean of the word's characters
    assert coords(words[0]) == sorted([(100, 50), (116, 50), (116, 81), (100, 81)])
    assert coords(words[1]) == sorted([(128, 50), (136, 50), (136, 81), (128, 81)])
    glyphs = words[0].findall(f"{{{PAGE_NS}}}Glyph")
    assert [uni(g) for g in glyphs] == ["a", "b"] and [conf(g) for g in glyphs] == [0.9, 0.7]
    assert coords(glyphs[1]) == sorted([(112, 50), (116, 50), (116, 81), (112, 81)])
    assert uni(tl) == "ab c" and conf(tl) == pytest.approx(0.7375, abs=1e-4)


def test_alto_strings_with_wc_cc_and_glyphs(page):
    doc = render(page, "alto")
    assert schema_errors(doc, "alto") == []
    tl = etree.fromstring(doc).find(f".//{{{ALTO_NS}}}TextLine")
    s = tl.findall(f"{{{ALTO_NS}}}String")
    assert [(e.get("CONTENT"), e.get("WC"), e.get("CC")) for e in s] == [("ab", "0.8000", "1 3"), ("c", "0.5500", "4")]
    assert [(e.get("HPOS"), e.get("VPOS"), e.get("WIDTH"), e.get("HEIGHT")) for e in s] == [
        ("100", "50", "16", "31"), ("128", "50", "8", "31")]
    assert len(tl.findall(f"{{{ALTO_NS}}}SP")) == 1
    g = s[0].findall(f"{{{ALTO_NS}}}Glyph")
    assert [(e.get("CONTENT"), e.get("GC"), e.get("HPOS"), e.get("WIDTH")) for e in g] == [
        ("a", "0.9000", "100", "8"), ("b", "0.7000", "112", "4")]


def test_json_words(page):
    import json

    line = json.loads(render(page, "json"))["lines"][0]
    assert line["words"] == [{"text": "ab", "confidence": 0.8, "x": [100.0, 116.0]},
                             {"text": "c", "confidence": 0.55, "x": [128.0, 136.0]}]


def test_clip_x_cuts_a_slanted_polygon():
    poly = np.array([[0.0, 0.0], [100.0, 20.0], [100.0, 60.0], [0.0, 40.0]])   # top and bottom rise 0.2 per px
    part = clip_x(poly, 25.0, 50.0)
    assert sorted(map(tuple, np.round(part, 6))) == sorted([(25.0, 5.0), (50.0, 10.0), (50.0, 50.0), (25.0, 45.0)])


def test_a_line_the_recognizer_refuses_is_empty_and_reported_not_fatal():
    from inkpack.errors import InputTooLargeError

    class Picky:
        """Reads lines narrower than 100 px as "ok"; a wider one is refused."""

        def recognize(self, crops):
            if any(c.shape[1] >= 100 for c in crops):
                raise InputTooLargeError("<array>: line too wide")
            return ["ok" for _ in crops]

    gray = np.full((120, 400), 210, np.uint8)
    polys = [np.array([[10.0, 10], [60, 10], [60, 40], [10, 40]]),
             np.array([[10.0, 50], [300, 50], [300, 80], [10, 80]]),
             np.array([[10.0, 90], [50, 90], [50, 110], [10, 110]])]
    errors = []
    texts, confs, glyphs = read_lines(gray, polys, Picky(), errors)
    assert texts == ["ok", "", "ok"] and confs == [1.0, 0.0, 1.0] and glyphs == [[], [], []]
    assert len(errors) == 1 and errors[0].startswith("line 2 not read") and "too wide" in errors[0]
