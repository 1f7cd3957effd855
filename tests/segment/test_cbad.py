import numpy as np
import pytest

from inkpack.segment.cbad import aggregate, page_scores, point_to_polyline, tolerances


def hline(x0, x1, y):
    return np.array([[x0, y], [x1, y]], float)


def test_identical_lines_score_one():
    gt = [hline(0, 100, 0), hline(0, 100, 40)]
    s = page_scores(gt, [g.copy() for g in gt])
    assert s["precision"] == pytest.approx(1) and s["recall"] == pytest.approx(1) and s["f1"] == pytest.approx(1)


def test_tolerance_is_quarter_interline_distance_clipped():
    assert np.allclose(tolerances([hline(0, 100, 0), hline(0, 100, 40), hline(0, 100, 100)]), [10, 10, 15])
    assert np.allclose(tolerances([hline(0, 100, 0), hline(0, 100, 12)]), [5, 5])


def test_shifted_line_gets_linear_falloff():
    # tol 10; the first hypothesis is 15 px off its line: coverage (30 - 15) / 20 = 0.75
    gt = [hline(0, 100, 0), hline(0, 100, 40)]
    s = page_scores(gt, [hline(0, 100, 15), hline(0, 100, 40)])
    assert s["precision"] == pytest.approx(0.875) and s["recall"] == pytest.approx(0.875)
    assert s["f1"] == pytest.approx(0.875)


def test_merged_lines_lose_precision_and_recall():
    # two GT lines 100 px apart on one row (tol 15: no neighbour above/below), one detection over both:
    # precision = covered fraction of the 300 px detection by GT line 1 = (115 + 15) / 300
    gt = [hline(0, 100, 0), hline(200, 300, 0)]
    s = page_scores(gt, [hline(0, 300, 0)])
    assert s["precision"] == pytest.approx(130 / 300, abs=0.01)
    assert s["recall"] == pytest.approx(0.5)


def test_split_line_keeps_full_scores():
    gt = [hline(0, 200, 0), hline(0, 200, 40)]
    s = page_scores(gt, [hline(0, 95, 0), hline(105, 200, 0), hline(0, 200, 40)])
    assert s["precision"] == pytest.approx(1) and s["recall"] == pytest.approx(1)


def test_missing_and_spurious_lines():
    gt = [hline(0, 100, 0), hline(0, 100, 40)]
    s = page_scores(gt, [hline(0, 100, 0), hline(0, 100, 200)])   # one found, one far off
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert page_scores(gt, [])["recall"] == 0 and page_scores(gt, [])["f1"] == 0
    assert page_scores([], [])["f1"] == 1


def test_distance_is_to_segments_not_vertices():
    assert point_to_polyline(np.array([[5.0, 3.0]]), hline(0, 10, 0))[0] == pytest.approx(3)


def test_aggregate_averages_pages_then_harmonic_mean():
    a = aggregate([{"precision": 1, "recall": 1}, {"precision": 0.5, "recall": 0.25}])
    assert a["precision"] == pytest.approx(0.75) and a["recall"] == pytest.approx(0.625)
    assert a["f1"] == pytest.approx(2 * 0.75 * 0.625 / 1.375)
