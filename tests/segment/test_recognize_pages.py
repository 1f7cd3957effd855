"""``inkpack recognize --page``: page scans segmented by the shipped segmenter, each line read by
a line model, written as PAGE-XML / ALTO / text in reading order; bad pages skipped in one line."""

import numpy as np
import pytest
from lxml import etree
from scan_pages import TEXTS, draw_page

from inkpack.cli import main
from inkpack.errors import ConfigError
from inkpack.segment.output import ALTO_NS, PAGE_NS
from inkpack.segment.pages import read_gt_page


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    ys = draw_page(root / "a.png")
    from PIL import Image

    Image.new("L", (600, 400), 230).save(root / "blank.png")  # a blank sheet
    (root / "bad.png").write_bytes(b"not an image")
    (root / "empty.jpg").write_bytes(b"")
    Image.new("L", (8000, 5001), 230).save(root / "huge.png")  # 40,008,000 pixels > the 40 M limit
    return root, ys


def test_one_page_to_pagexml_lines_top_to_bottom_on_the_drawn_baselines(scans, tmp_path):
    root, ys = scans
    out = tmp_path / "a.xml"
    assert main(["recognize", str(root / "a.png"), "--page", "--out", str(out)]) == 0
    gt = read_gt_page(out)
    assert (gt.width, gt.height) == (900, 600) and len(gt.lines) == len(TEXTS)
    base_y = [float(ln.baseline[:, 1].mean()) for ln in gt.lines]
    assert base_y == sorted(base_y)
    np.testing.assert_allclose(base_y, ys, atol=6)  # where the font put each baseline
    for ln, y in zip(gt.lines, ys):  # each polygon holds its baseline, and no other line's
        assert ln.polygon[:, 1].min() < y < ln.polygon[:, 1].max() < y + 100
    tl = list(etree.parse(str(out)).iter(f"{{{PAGE_NS}}}TextLine"))
    confs = [float(e.find(f"{{{PAGE_NS}}}TextEquiv").get("conf")) for e in tl]  # per-line confidences
    assert len(confs) == len(TEXTS) and all(0.0 <= c <= 1.0 for c in confs)


def test_alto_and_text_formats(scans, tmp_path, capsys):
    root, ys = scans
    out = tmp_path / "a.alto.xml"
    assert main(["recognize", str(root / "a.png"), "--page", "--format", "alto", "--out", str(out)]) == 0
    lines = list(etree.parse(str(out)).iter(f"{{{ALTO_NS}}}TextLine"))
    vpos = [int(float(e.get("VPOS"))) for e in lines]
    assert len(lines) == len(TEXTS) and vpos == sorted(vpos)
    assert all(abs(v + int(float(e.get("HEIGHT"))) / 2 - y) < 60 for v, e, y in zip(vpos, lines, ys))
    capsys.readouterr()
    assert main(["recognize", str(root / "a.png"), "--page", "--format", "text"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n").split("\n")) == len(TEXTS)


def test_folder_skips_bad_pages_in_one_line_and_writes_blank_as_empty_pagexml(scans, tmp_path, capsys):
    root, _ = scans
    out = tmp_path / "out"
    assert main(["recognize", str(root), "--page", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 3 and all(any(n in e for e in errors) for n in ("bad.png", "empty.jpg", "huge.png"))
    assert "too large" in next(e for e in errors if "huge.png" in e)
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.xml", "blank.xml"]
    blank = read_gt_page(out / "blank.xml")
    assert (blank.width, blank.height, blank.lines) == (600, 400, [])
    assert len(read_gt_page(out / "a.xml").lines) == len(TEXTS)


def test_bad_invocations_are_one_line_errors(scans, tmp_path, capsys):
    root, _ = scans
    assert main(["recognize", str(root / "bad.png"), "--page"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.png" in err[0] and "not an image" in err[0]
    assert main(["recognize", str(root), "--page"]) == 2  # several pages need an --out folder
    assert "--out" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--format"):
        from inkpack.cli import build_parser

        a = build_parser(["recognize"]).parse_args(["recognize", str(root / "a.png"), "--format", "alto"])
        a.fn(a)
