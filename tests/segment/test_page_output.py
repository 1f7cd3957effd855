import json

import numpy as np
import pytest
import torch
from lxml import etree

from inkpack.segment.model import default_config
from inkpack.segment.output import ALTO_NS, PAGE_NS, page_to_alto, page_to_pagexml
from inkpack.segment.page import Segmenter, crop_line, recognize_page
from inkpack.segment.pages import read_gt_page
from inkpack.segment.postprocess import Line


class StubNet(torch.nn.Module):
    """Logits with one baseline at output row 100, columns 20..200, line band rows 90..102."""

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        y = torch.full((1, 3, h, w), -10.0)
        y[0, 0, 99:102, 20:201] = 10
        y[0, 1, 90:103, 10:211] = 10
        y[0, 2, 80:110, 10:210] = 10
        return y


def test_segmenter_maps_back_to_page_pixels():
    seg = Segmenter(model=StubNet(), config=default_config(768))
    gray = np.full((600, 400), 200, np.uint8)           # scale 768 / 600 = 1.28; map px = 2 / 1.28 page px
    lines = seg.segment(gray)
    assert len(lines) == 1
    b = lines[0].baseline
    k = 2 / 1.28
    assert b[0, 0] == pytest.approx(20 * k) and b[-1, 0] == pytest.approx(200 * k)
    assert np.allclose(b[:, 1], 100 * k, atol=0.01)
    assert lines[0].polygon[:, 1].min() == pytest.approx(90 * k, abs=0.8 * k)
    assert lines[0].polygon[:, 1].max() == pytest.approx(103 * k, abs=0.8 * k)


def test_crop_line_fills_outside_polygon_with_inside_median():
    gray = np.zeros((50, 80), np.uint8)
    gray[:, :40] = 100
    gray[:, 40:] = 30
    tri = np.array([[10, 10], [30, 10], [10, 40]], float)      # inside: all 100
    c = crop_line(gray, tri)
    assert c.shape == (31, 21) and (c == 100).all()
    assert crop_line(gray, np.array([[100, 10], [120, 10], [100, 40]], float)) is None   # off the image


def _lines():
    return [Line(np.array([[10, 50], [200, 52]], float), np.array([[8, 30], [205, 30], [205, 58], [8, 58]], float), 0, 0),
            Line(np.array([[10, 100], [190, 100]], float), np.array([[8, 80], [195, 80], [195, 106], [8, 106]], float), 0, 1),
            Line(np.array([[250, 60], [380, 60]], float), np.array([[245, 40], [385, 40], [385, 66], [245, 66]], float), 1, 2)]


def test_pagexml_round_trip_keeps_lines_regions_order_and_text(tmp_path):
    xml = page_to_pagexml(_lines(), (400, 300), ["first line", "second", "margin"], [0.9, 0.5, 0.7], "p.jpg")
    root = etree.fromstring(xml)
    assert root.tag == f"{{{PAGE_NS}}}PcGts"
    page = root.find(f"{{{PAGE_NS}}}Page")
    assert [etree.QName(c).localname for c in page] == ["ReadingOrder", "TextRegion", "TextRegion"]
    tl = root.find(f".//{{{PAGE_NS}}}TextLine")
    assert [etree.QName(c).localname for c in tl] == ["Coords", "Baseline", "TextEquiv"]
    assert tl.find(f"{{{PAGE_NS}}}TextEquiv").get("conf") == "0.9000"
    (tmp_path / "p.xml").write_bytes(xml)
    gt = read_gt_page(tmp_path / "p.xml")
    assert (gt.width, gt.height) == (400, 300)
    assert [ln.text for ln in gt.lines] == ["first line", "second", "margin"]
    assert [ln.region for ln in gt.lines] == ["r1", "r1", "r2"]
    assert np.array_equal(gt.lines[0].baseline, [[10, 50], [200, 52]])
    assert np.array_equal(gt.regions["r2"], [[245, 40], [385, 40], [385, 66], [245, 66]])


def test_empty_page_gives_valid_empty_pagexml_and_alto():
    root = etree.fromstring(page_to_pagexml([], (100, 100)))
    page = root.find(f"{{{PAGE_NS}}}Page")
    assert len(page) == 0 and page.get("imageWidth") == "100"
    alto = etree.fromstring(page_to_alto([], (100, 100)))
    assert alto.find(f".//{{{ALTO_NS}}}PrintSpace") is not None


def test_alto_lines_words_and_baselines():
    root = etree.fromstring(page_to_alto(_lines(), (400, 300), ["first line", "second", "margin"], [0.9, 0.5, 0.7]))
    blocks = root.findall(f".//{{{ALTO_NS}}}TextBlock")
    assert len(blocks) == 2
    tls = root.findall(f".//{{{ALTO_NS}}}TextLine")
    assert tls[0].get("BASELINE") == "10,50 200,52"
    assert (tls[0].get("HPOS"), tls[0].get("VPOS"), tls[0].get("WIDTH"), tls[0].get("HEIGHT")) == ("8", "30", "197", "28")
    assert [s.get("CONTENT") for s in tls[0].findall(f"{{{ALTO_NS}}}String")] == ["first", "line"]
    assert len(tls[0].findall(f"{{{ALTO_NS}}}SP")) == 1


class FakeRecognizer:
    """'Reads' a crop as its width, to check which crop went where."""

    def recognize(self, crops):
        return [f"w{c.shape[1]}" for c in crops]


class FixedSegmenter(Segmenter):
    def __init__(self):
        pass

    def segment(self, image):
        return _lines()


def test_recognize_page_crops_each_polygon_and_keeps_reading_order():
    gray = np.full((300, 400), 200, np.uint8)
    r = recognize_page(gray, FixedSegmenter(), FakeRecognizer())
    assert r.texts == ["w198", "w188", "w141"]
    assert r.text == "w198\nw188\nw141" and (r.width, r.height) == (400, 300)


def test_batchnorm_folding_keeps_outputs():
    from inkpack.segment.model import SegNet, fold_batchnorm

    torch.manual_seed(0)
    m = SegNet((4, 8, 8, 8))
    for mod in m.modules():   # non-trivial running statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1); mod.running_var.uniform_(0.5, 2); mod.weight.data.uniform_(0.5, 1.5)
    m.eval()
    x = torch.randn(1, 1, 64, 48)
    ref = m(x)
    fold_batchnorm(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(m(x), ref, atol=1e-5)


def test_missing_or_broken_segmentation_model_is_a_one_line_error(tmp_path):
    from inkpack.errors import ModelFileError
    from inkpack.segment.model import SegNet, save_segmenter

    with pytest.raises(ModelFileError, match="nope.json: segmentation model not found"):
        Segmenter(tmp_path / "nope")
    save_segmenter(SegNet((4, 8, 8, 8)), default_config(128, (4, 8, 8, 8)), tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    cfg["options"]["widths"][0] = 6
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="m.safetensors: cannot load segmentation weights"):
        Segmenter(tmp_path / "m")
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(ModelFileError, match="invalid JSON"):
        Segmenter(tmp_path / "m")


def test_evaluate_pages_scores_a_perfect_segmenter_and_counts_page_cer(tmp_path):
    import cv2

    from inkpack.segment.evaluate import evaluate_pages

    cv2.imwrite(str(tmp_path / "p.png"), np.full((300, 400), 200, np.uint8))
    (tmp_path / "p.xml").write_bytes(page_to_pagexml(_lines(), (400, 300), ["w198", "w188", "wrong"], None, "p.png"))
    r = evaluate_pages([(str(tmp_path / "p.png"), str(tmp_path / "p.xml"))], FixedSegmenter(), FakeRecognizer())
    assert r["baseline_f1"] == pytest.approx(1) and r["detected_lines"] == r["gt_lines"] == 3
    ref = "w198\nw188\nwrong"               # recognized "w198\nw188\nw141": 4 edits ("rong" -> "141")
    assert r["page_cer"] == pytest.approx(4 / len(ref)) and r["gt_line_page_cer"] == pytest.approx(4 / len(ref))
    assert r["gt_line_cer"] == pytest.approx(4 / 13) and r["failed"] == []
