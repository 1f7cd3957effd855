"""PAGE-XML (2019-07-15 schema) and ALTO 4 documents for segmented / recognized pages."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np
from lxml import etree

from inkpack.segment.postprocess import Line

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def points(pts: np.ndarray, w: int, h: int, min_points: int = 2) -> str:
    """``x,y x,y ...`` as non-negative integers inside the image, consecutive duplicates dropped."""
    p = np.round(np.asarray(pts, np.float64)).astype(int)
    p[:, 0] = np.clip(p[:, 0], 0, max(0, w - 1))
    p[:, 1] = np.clip(p[:, 1], 0, max(0, h - 1))
    keep = [0] + [i for i in range(1, len(p)) if (p[i] != p[i - 1]).any()]
    p = p[keep]
    while len(p) < min_points:
        p = np.concatenate([p, p[-1:] + [1, 0]])
    return " ".join(f"{x},{y}" for x, y in p)


def _regions(lines: Sequence[Line]) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for i, ln in enumerate(lines):
        out.setdefault(ln.region, []).append(i)
    return [out[k] for k in sorted(out)]


def _box(lines: Sequence[Line], idx: list[int]) -> tuple[float, float, float, float]:
    pts = np.concatenate([lines[i].polygon for i in idx])
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def page_to_pagexml(lines: Sequence[Line], size: tuple[int, int], texts: Sequence[str] | None = None,
                    confidences: Sequence[float] | None = None, image_name: str = "page.jpg") -> bytes:
    """PAGE 2019 bytes: TextRegions (reading order) of TextLines with Coords, Baseline, TextEquiv."""
    w, h = size
    E = lambda tag, **a: etree.Element(f"{{{PAGE_NS}}}{tag}", {k: str(v) for k, v in a.items()})  # noqa: E731
    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap={None: PAGE_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd")
    meta = etree.SubElement(root, f"{{{PAGE_NS}}}Metadata")
    for tag, val in (("Creator", "inkpack"), ("Created", _now()), ("LastChange", _now())):
        etree.SubElement(meta, f"{{{PAGE_NS}}}{tag}").text = val
    page = E("Page", imageFilename=image_name, imageWidth=w, imageHeight=h)
    root.append(page)
    groups = _regions(lines)
    if groups:
        ro = etree.SubElement(page, f"{{{PAGE_NS}}}ReadingOrder")
        og = etree.SubElement(ro, f"{{{PAGE_NS}}}OrderedGroup", id="ro_1", caption="Regions reading order")
        for r in range(len(groups)):
            etree.SubElement(og, f"{{{PAGE_NS}}}RegionRefIndexed", index=str(r), regionRef=f"r{r + 1}")
    for r, idx in enumerate(groups):
        reg = etree.SubElement(page, f"{{{PAGE_NS}}}TextRegion", id=f"r{r + 1}",
                               custom=f"readingOrder {{index:{r};}}")
        x0, y0, x1, y1 = _box(lines, idx)
        etree.SubElement(reg, f"{{{PAGE_NS}}}Coords",
                         points=points(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), w, h, 3))
        for k, i in enumerate(idx):
            ln = lines[i]
            tl = etree.SubElement(reg, f"{{{PAGE_NS}}}TextLine", id=f"r{r + 1}l{k + 1}",
                                  custom=f"readingOrder {{index:{k};}}")
            etree.SubElement(tl, f"{{{PAGE_NS}}}Coords", points=points(ln.polygon, w, h, 3))
            etree.SubElement(tl, f"{{{PAGE_NS}}}Baseline", points=points(ln.baseline, w, h, 2))
            if texts is not None:
                te = etree.SubElement(tl, f"{{{PAGE_NS}}}TextEquiv")
                if confidences is not None:
                    te.set("conf", f"{min(1.0, max(0.0, confidences[i])):.4f}")
                etree.SubElement(te, f"{{{PAGE_NS}}}Unicode").text = texts[i]
        if texts is not None:
            te = etree.SubElement(reg, f"{{{PAGE_NS}}}TextEquiv")
            etree.SubElement(te, f"{{{PAGE_NS}}}Unicode").text = "\n".join(texts[i] for i in idx)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def page_to_alto(lines: Sequence[Line], size: tuple[int, int], texts: Sequence[str] | None = None,
                 confidences: Sequence[float] | None = None, image_name: str = "page.jpg") -> bytes:
    """ALTO 4 bytes: TextBlocks (reading order) of TextLines with polygon, baseline, words."""
    w, h = size
    A = lambda parent, tag, **a: etree.SubElement(parent, f"{{{ALTO_NS}}}{tag}",  # noqa: E731
                                                  {k: str(v) for k, v in a.items()})
    root = etree.Element(f"{{{ALTO_NS}}}alto", nsmap={None: ALTO_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{ALTO_NS} http://www.loc.gov/alto/v4/alto-4-2.xsd")
    desc = A(root, "Description")
    A(desc, "MeasurementUnit").text = "pixel"
    A(A(desc, "sourceImageInformation"), "fileName").text = image_name
    layout = A(root, "Layout")
    page = A(layout, "Page", ID="page_1", PHYSICAL_IMG_NR=1, WIDTH=w, HEIGHT=h)
    ps = A(page, "PrintSpace", HPOS=0, VPOS=0, WIDTH=w, HEIGHT=h)
    for r, idx in enumerate(_regions(lines)):
        x0, y0, x1, y1 = (int(round(v)) for v in _box(lines, idx))
        blk = A(ps, "TextBlock", ID=f"r{r + 1}", HPOS=max(0, x0), VPOS=max(0, y0),
                WIDTH=max(1, x1 - x0), HEIGHT=max(1, y1 - y0))
        for k, i in enumerate(idx):
            ln = lines[i]
            lx0, ly0 = np.maximum(0, np.round(ln.polygon.min(0))).astype(int)
            lx1, ly1 = np.round(ln.polygon.max(0)).astype(int)
            tl = A(blk, "TextLine", ID=f"r{r + 1}l{k + 1}", HPOS=lx0, VPOS=ly0, WIDTH=max(1, lx1 - lx0),
                   HEIGHT=max(1, ly1 - ly0), BASELINE=points(ln.baseline, w, h, 2))
            A(A(tl, "Shape"), "Polygon", POINTS=points(ln.polygon, w, h, 3))
            words = (texts[i].split() if texts is not None else []) or [""]
            for j, word in enumerate(words):
                if j:
                    A(tl, "SP")
                s = A(tl, "String", CONTENT=word)
                if confidences is not None and texts is not None:
                    s.set("WC", f"{min(1.0, max(0.0, confidences[i])):.4f}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
