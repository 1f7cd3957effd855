"""``inkpack evaluate-pages``: baseline P/R/F1 (cBAD) and page CER/WER of the shipped segmenter +
line model against a synthetic page's own PAGE-XML, beside the CER with its ground-truth lines."""

import json

import pytest
from lxml import etree
from scan_pages import TEXTS, draw_page

from inkpack.cli import main
from inkpack.errors import InputError
from inkpack.segment.output import PAGE_NS
from inkpack.segment.pages import read_gt_page


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page, and its PAGE-XML as ``recognize --page`` writes it (lines, baselines, text)."""
    root = tmp_path_factory.mktemp("evalpages")
    draw_page(root / "p.png")
    assert main(["recognize", str(root / "p.png"), "--page", "--out", str(root / "read.xml")]) == 0
    return root


def _gt(root, dest, edit):
    """A ground-truth folder: the page image and its PAGE-XML changed by ``edit(tree)``."""
    dest.mkdir()
    (dest / "p.png").write_bytes((root / "p.png").read_bytes())
    tree = etree.parse(str(root / "read.xml"))
    edit(tree)
    tree.write(str(dest / "p.xml"))
    return dest


def _lines(tree):
    return list(tree.iter(f"{{{PAGE_NS}}}TextLine"))


def test_own_lines_score_perfect_and_known_text_edits_give_known_cer(page, tmp_path, capsys):
    read = [ln.text for ln in read_gt_page(page / "read.xml").lines]
    assert len(read) == len(TEXTS) and all(t.strip() for t in read)

    def add_x(tree):  # one character more at the end of every line: one edit a line, one word a line
        for ln in _lines(tree):
            u = ln.find(f"{{{PAGE_NS}}}TextEquiv/{{{PAGE_NS}}}Unicode")
            u.text = u.text + "x"

    gt = _gt(page, tmp_path / "gt", add_x)
    out = tmp_path / "res.json"
    assert main(["evaluate-pages", str(gt), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    ref = "\n".join(t + "x" for t in read)
    assert res["pages"] == 1 and res["failed"] == []
    assert res["baseline_precision"] == pytest.approx(1.0) and res["baseline_recall"] == pytest.approx(1.0)
    assert res["baseline_f1"] == pytest.approx(1.0)
    assert res["page_cer"] == pytest.approx(len(read) / len(ref))
    assert res["page_wer"] == pytest.approx(len(read) / len(ref.split()))
    # beside: the same page read from the ground-truth polygons (rounded in the XML, so other crops)
    assert 0.0 <= res["gt_line_page_cer"] and 0.0 <= res["gt_line_cer"] and res["page_s_per_page"] > 0
    assert (res["gt_lines"], res["detected_lines"]) == (len(TEXTS), len(TEXTS))
    assert "F1 1.000" in capsys.readouterr().out


def test_a_line_missing_from_the_ground_truth_costs_precision_not_recall(page, tmp_path):
    def drop_last(tree):
        last = _lines(tree)[-1]
        last.getparent().remove(last)

    gt = _gt(page, tmp_path / "gt", drop_last)
    out = tmp_path / "res.json"
    assert main(["evaluate-pages", str(gt), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["baseline_recall"] == pytest.approx(1.0)
    assert res["baseline_precision"] == pytest.approx(2 / 3, abs=0.02)  # one detected line of three unmatched
    assert res["page_cer"] > 0


class Fixed:
    """A line recognizer that reads every crop as ``abc``: page and GT-line CER known by hand."""

    def recognize(self, crops):
        assert all(c.ndim == 2 and c.size for c in crops)
        return ["abc"] * len(crops)


@pytest.mark.parametrize("drop, page_cer, gt_cer", [
    (False, 1 / 11, 1 / 11),   # ref abc\nabd\nabc, hyp abc\nabc\nabc; the GT lines read the same
    (True, 5 / 7, 1 / 7),      # ref abc\nabd: the third detected line (4 chars with its newline) is extra
])
def test_library_page_cer_against_hand_computed_values(page, tmp_path, drop, page_cer, gt_cer):
    from inkpack.segment.evaluate import evaluate_pages
    from inkpack.segment.page import Segmenter

    def set_texts(tree):
        lines = _lines(tree)
        for ln, t in zip(lines, ["abc", "abd", "abc"]):
            ln.find(f"{{{PAGE_NS}}}TextEquiv/{{{PAGE_NS}}}Unicode").text = t
        if drop:
            lines[-1].getparent().remove(lines[-1])

    gt = _gt(page, tmp_path / "gt", set_texts)
    res = evaluate_pages([(str(gt / "p.png"), str(gt / "p.xml"))], Segmenter(), Fixed(), progress=False)
    assert res["page_cer"] == pytest.approx(page_cer) and res["gt_line_page_cer"] == pytest.approx(gt_cer)
    assert res["gt_line_cer"] == pytest.approx(1 / (9 if not drop else 6))
    assert res["page_wer"] == pytest.approx((1 if not drop else 2) / (3 if not drop else 2))


def test_folder_without_pages_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="no page images with PAGE-XML"):
        from inkpack.cli import build_parser

        a = build_parser(["evaluate-pages"]).parse_args(["evaluate-pages", str(tmp_path)])
        a.fn(a)
