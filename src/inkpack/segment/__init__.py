"""Whole-page recognition: line segmentation (a small fully convolutional network predicting
baseline / line / region maps + post-processing), reading order, PAGE-XML / ALTO output and
the cBAD baseline measure.

    from inkpack.segment import Segmenter, segment_page, recognize_page, page_to_pagexml
    seg = Segmenter()                          # models/hooker-segment
    lines = segment_page("page.jpg", seg)      # Line(baseline, polygon, region, order)
    page = recognize_page("page.jpg", seg, inkpack.load())
    print(page.text)                           # lines in reading order, joined by newlines
    xml = page_to_pagexml(page.lines, (page.width, page.height), page.texts, page.confidences,
                          glyphs=page.glyphs, turns=page.turns)   # words and glyphs with confidences
"""

from inkpack.segment.output import page_to_alto, page_to_pagexml
from inkpack.segment.page import Glyph, PageResult, Segmenter, recognize_page, segment_page
from inkpack.segment.postprocess import Line

__all__ = ["Glyph", "Line", "PageResult", "Segmenter", "page_to_alto", "page_to_pagexml", "recognize_page",
           "segment_page"]
