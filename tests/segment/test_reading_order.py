"""Line reading order within a region (``order_lines``): hand-made baselines with known order."""

import numpy as np

from inkpack.segment.postprocess import order_lines


def base(x0, x1, y0, y1=None):
    y1 = y0 if y1 is None else y1
    return np.array([[x0, y0], [(x0 + x1) / 2, (y0 + y1) / 2], [x1, y1]], np.float64)


def test_interlinear_insertion_above_a_line_comes_before_it():
    # spacing 40: a short word written ~25 px above a long slanted line (y 180 -> 140), right of
    # its start: their bands (20 px above the lowest baseline point) overlap by more than half,
    # which read as side by side would put the long line first; sharing columns, the word is
    # above it and is read first
    lines = [base(10, 600, 100), base(10, 600, 180, 140), base(150, 250, 142)]
    assert order_lines(lines, 40.0) == [0, 2, 1]


def test_side_by_side_lines_are_read_left_first_and_rows_top_first():
    # a date on the right a little higher than the address on the left (no shared columns)
    lines = [base(400, 600, 50), base(20, 250, 58), base(20, 600, 120), base(20, 600, 200)]
    assert order_lines(lines, 40.0) == [1, 0, 2, 3]


def test_slanted_lines_sharing_columns_keep_top_to_bottom_order():
    # two long slanted lines whose y ranges overlap; the lower one starts further left
    a = base(100, 700, 130, 90)   # rises to the right
    b = base(20, 700, 175, 130)   # 40 px below a at every shared column
    assert order_lines([b, a], 40.0) == [1, 0]


def box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def test_gt_order_puts_detected_lines_in_the_ground_truth_order():
    from inkpack.segment.evaluate import gt_order

    a, b, c = box(10, 10, 300, 40), box(10, 60, 300, 90), box(10, 110, 300, 140)
    d = box(320, 60, 390, 90)                           # matches no ground-truth line
    gt = [box(12, 112, 298, 138), box(8, 8, 302, 42), box(10, 62, 300, 88)]   # ground truth reads c, a, b
    # detected in the order a, b, d, c: c goes first, d stays after b (the line before it)
    assert gt_order([a, b, d, c], gt, (200, 400)) == [3, 0, 1, 2]
    assert gt_order([], gt, (200, 400)) == [] and gt_order([a, d], [], (200, 400)) == [0, 1]
