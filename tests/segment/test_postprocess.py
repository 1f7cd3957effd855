import numpy as np
import cv2

from inkpack.segment.postprocess import Params, extract_baselines, maps_to_lines, order_boxes


def synth_maps(lines, regions, shape=(130, 200), gaps=()):
    """lines: (x0, x1, y) baselines; line band y-12..y+4; regions: boxes (x0, y0, x1, y1)."""
    m = np.zeros((3,) + shape, np.float32)
    for x0, x1, y in lines:
        m[0, y - 1:y + 2, x0:x1 + 1] = 0.9
        m[1, y - 12:y + 5, x0 - 2:x1 + 3] = 0.9
    for x, y in gaps:   # a hole in a baseline (fragmented prediction)
        m[0, y - 1:y + 2, x:x + 6] = 0.1
    for x0, y0, x1, y1 in regions:
        m[2, y0:y1 + 1, x0:x1 + 1] = 0.9
    return m


LEFT = [(10, 90, 20), (10, 85, 40), (12, 90, 60)]
RIGHT = [(110, 190, 25), (110, 180, 45)]
BOTTOM = [(10, 190, 100)]


def test_two_columns_then_full_width_line_in_reading_order_with_polygons():
    m = synth_maps(RIGHT + BOTTOM + LEFT,
                   [(5, 8, 95, 66), (105, 12, 195, 50), (5, 86, 195, 106)])
    lines = maps_to_lines(m)
    expect = LEFT + RIGHT + BOTTOM
    assert len(lines) == len(expect)
    for ln, (x0, x1, y) in zip(lines, expect):
        b = ln.baseline
        assert abs(b[0, 0] - x0) <= 1 and abs(b[-1, 0] - x1) <= 1
        assert np.allclose(b[:, 1], y, atol=0.6)
        px0, py0 = ln.polygon.min(0)
        px1, py1 = ln.polygon.max(0)
        assert abs(py0 - (y - 12)) <= 1.5 and abs(py1 - (y + 5)) <= 1.5   # band y-12 .. y+4 inclusive
        assert px0 <= x0 and px1 >= x1 and px0 >= x0 - 5 and px1 <= x1 + 6
    assert [ln.region for ln in lines] == [0, 0, 0, 1, 1, 2]
    assert [ln.order for ln in lines] == list(range(6))


def test_page_scale_and_pixel_centre_offset():
    m = synth_maps([(10, 90, 20)], [(5, 5, 95, 30)])
    ln = maps_to_lines(m, to_page=4.0, offset=0.5)[0]
    assert abs(ln.baseline[0, 0] - 42) < 1e-6 and abs(ln.baseline[0, 1] - 82) < 1e-3


def test_fragmented_baseline_is_joined_and_short_specks_dropped():
    m = synth_maps([(10, 150, 30), (10, 150, 60)], [], gaps=[(70, 30)])
    m[0, 90:93, 40:44] = 0.9                              # a speck, shorter than min_length
    found = extract_baselines(m[0], Params(min_length=8))
    assert len(found) == 2
    assert found[0][0][0, 0] == 10 and found[0][0][-1, 0] == 150


def test_lines_without_regions_become_their_own_regions_and_far_columns_stay_apart():
    m = synth_maps(LEFT + RIGHT, [])
    lines = maps_to_lines(m)
    ys = [round(float(ln.baseline[:, 1].mean())) for ln in lines]
    assert ys == [20, 40, 60, 25, 45]
    assert len({ln.region for ln in lines[:3]}) == 1 and lines[3].region != lines[0].region


def test_empty_maps_give_no_lines():
    assert maps_to_lines(np.zeros((3, 50, 50), np.float32)) == []


def test_order_boxes_side_by_side_left_first_else_top_first():
    boxes = [(100, 0, 150, 40), (0, 5, 50, 45), (0, 60, 150, 80)]
    assert order_boxes(boxes) == [1, 0, 2]


def test_classical_projection_profile_finds_level_lines():
    from inkpack.segment.classical import ClassicalSegmenter

    gray = np.full((400, 300), 210, np.uint8)
    for y in (80, 160, 240):
        for x in range(40, 250, 8):
            cv2.rectangle(gray, (x, y - 14), (x + 4, y), 30, -1)
    lines = ClassicalSegmenter(long_side=400).segment(gray)
    assert len(lines) == 3
    for ln, y in zip(lines, (80, 160, 240)):
        assert abs(ln.baseline[0, 1] - y) <= 4 and abs(ln.baseline[0, 0] - 40) <= 2 and abs(ln.baseline[-1, 0] - 252) <= 2
    assert ClassicalSegmenter().segment(np.full((100, 100), 200, np.uint8)) == []
