"""PAGE-XML (2019-07-15 schema) and ALTO 4 documents for segmented / recognized pages."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np
from lxml import etree

from inkpack.segment.orient import back
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


def clip_x(poly: np.ndarray, x0: float, x1: float) -> np.ndarray:
    """The part of a polygon between the verticals ``x = x0`` and ``x = x1`` (Sutherland-Hodgman)."""
    def cut(pts, keep, xc):
        out = []
        for k in range(len(pts)):
            a, b = pts[k - 1], pts[k]
            ina, inb = keep(a[0]), keep(b[0])
            if inb and not ina or ina and not inb:
                t = (xc - a[0]) / (b[0] - a[0])
                out.append([xc, a[1] + t * (b[1] - a[1])])
            if inb:
                out.append(list(b))
        return np.array(out, np.float64).reshape(-1, 2)

    p = cut(np.asarray(poly, np.float64), lambda x: x >= x0, x0)
    return cut(p, lambda x: x <= x1, x1) if len(p) else p


def _part(poly: np.ndarray, x0: float, x1: float) -> np.ndarray:
    """The line polygon's part over ``[x0, x1]``, or a box of the polygon's height there."""
    p = clip_x(poly, x0, max(x1, x0 + 1))
    if len(p) >= 3:
        return p
    y0, y1 = poly[:, 1].min(), poly[:, 1].max()
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def line_words(glyphs) -> list[tuple[str, float, float, float, list]]:
    """Words of a line's :class:`~inkpack.segment.page.Glyph` s (runs between spaces):
    (text, confidence = mean of its characters', x0, x1, its glyphs)."""
    words, cur = [], []
    for g in list(glyphs) + [None]:
        if g is None or g.char.isspace():
            if cur:
                words.append(("".join(c.char for c in cur), float(np.mean([c.conf for c in cur])),
                              cur[0].x0, cur[-1].x1, cur))
            cur = []
        else:
            cur.append(g)
    return words


def _conf(v: float) -> str:
    return f"{min(1.0, max(0.0, v)):.4f}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def page_to_pagexml(lines: Sequence[Line], size: tuple[int, int], texts: Sequence[str] | None = None,
                    confidences: Sequence[float] | None = None, image_name: str = "page.jpg",
                    glyphs: Sequence[Sequence] | None = None, turns: int = 0) -> bytes:
    """PAGE 2019 bytes: TextRegions (reading order) of TextLines with Coords, Baseline, TextEquiv;
    with ``glyphs`` (per line, :class:`~inkpack.segment.page.Glyph` s) also Words and Glyphs, each
    with the part of the line polygon over its x range and a TextEquiv ``conf``. ``turns``: the
    lines are those of the page turned upright by that many quarter turns counter-clockwise
    (mapped back to the image's pixels; the Page's ``orientation`` says how to turn it)."""
    w, h = size
    T = lambda pts: back(np.asarray(pts, np.float64), turns, size)  # noqa: E731
    E = lambda tag, **a: etree.Element(f"{{{PAGE_NS}}}{tag}", {k: str(v) for k, v in a.items()})  # noqa: E731
    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap={None: PAGE_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd")
    meta = etree.SubElement(root, f"{{{PAGE_NS}}}Metadata")
    for tag, val in (("Creator", "inkpack"), ("Created", _now()), ("LastChange", _now())):
        etree.SubElement(meta, f"{{{PAGE_NS}}}{tag}").text = val
    page = E("Page", imageFilename=image_name, imageWidth=w, imageHeight=h)
    if turns % 4:
        o = (-90 * turns) % 360
        page.set("orientation", str(o - 360 if o > 180 else o))
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
                         points=points(T([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), w, h, 3))
        for k, i in enumerate(idx):
            ln = lines[i]
            tl = etree.SubElement(reg, f"{{{PAGE_NS}}}TextLine", id=f"r{r + 1}l{k + 1}",
                                  custom=f"readingOrder {{index:{k};}}")
            etree.SubElement(tl, f"{{{PAGE_NS}}}Coords", points=points(T(ln.polygon), w, h, 3))
            etree.SubElement(tl, f"{{{PAGE_NS}}}Baseline", points=points(T(ln.baseline), w, h, 2))
            if texts is not None and glyphs is not None and glyphs[i]:
                _page_words(tl, f"r{r + 1}l{k + 1}", ln.polygon, glyphs[i], w, h, T)
            if texts is not None:
                te = etree.SubElement(tl, f"{{{PAGE_NS}}}TextEquiv")
                if confidences is not None:
                    te.set("conf", f"{min(1.0, max(0.0, confidences[i])):.4f}")
                etree.SubElement(te, f"{{{PAGE_NS}}}Unicode").text = texts[i]
        if texts is not None:
            te = etree.SubElement(reg, f"{{{PAGE_NS}}}TextEquiv")
            etree.SubElement(te, f"{{{PAGE_NS}}}Unicode").text = "\n".join(texts[i] for i in idx)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _page_words(tl, lid: str, poly: np.ndarray, glyphs, w: int, h: int, T) -> None:
    P = f"{{{PAGE_NS}}}"
    for k, (text, conf, x0, x1, gl) in enumerate(line_words(glyphs)):
        word = etree.SubElement(tl, P + "Word", id=f"{lid}w{k + 1}")
        etree.SubElement(word, P + "Coords", points=points(T(_part(poly, x0, x1)), w, h, 3))
        for m, g in enumerate(gl):
            el = etree.SubElement(word, P + "Glyph", id=f"{lid}w{k + 1}g{m + 1}")
            etree.SubElement(el, P + "Coords", points=points(T(_part(poly, g.x0, g.x1)), w, h, 3))
            te = etree.SubElement(el, P + "TextEquiv", conf=_conf(g.conf))
            etree.SubElement(te, P + "Unicode").text = g.char
        te = etree.SubElement(word, P + "TextEquiv", conf=_conf(conf))
        etree.SubElement(te, P + "Unicode").text = text


def _alto_box(el, pts: np.ndarray) -> None:
    x0, y0 = np.maximum(0, np.round(pts.min(0))).astype(int)
    x1, y1 = np.round(pts.max(0)).astype(int)
    for k, v in (("HPOS", x0), ("VPOS", y0), ("WIDTH", max(1, x1 - x0)), ("HEIGHT", max(1, y1 - y0))):
        el.set(k, str(v))


def page_to_alto(lines: Sequence[Line], size: tuple[int, int], texts: Sequence[str] | None = None,
                 confidences: Sequence[float] | None = None, image_name: str = "page.jpg",
                 glyphs: Sequence[Sequence] | None = None, turns: int = 0) -> bytes:
    """ALTO 4 bytes: TextBlocks (reading order) of TextLines with polygon, baseline, words; with
    ``glyphs`` each String has its box, ``WC`` (mean of its characters' confidences), ``CC``
    (per character, 0 sure .. 9 unsure: ``round(9 * (1 - confidence))``) and Glyph children
    (``GC``, box); without, the line's words share the line confidence. ``turns``: as for
    :func:`page_to_pagexml` (TextBlocks then carry the text's ``ROTATION``)."""
    w, h = size
    T = lambda pts: back(np.asarray(pts, np.float64), turns, size)  # noqa: E731
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
        x0, y0, x1, y1 = _box(lines, idx)
        blk = A(ps, "TextBlock", ID=f"r{r + 1}")
        _alto_box(blk, T([[x0, y0], [x1, y1]]))
        if turns % 4:
            blk.set("ROTATION", str((360 - 90 * turns) % 360))
        for k, i in enumerate(idx):
            ln = lines[i]
            tl = A(blk, "TextLine", ID=f"r{r + 1}l{k + 1}")
            _alto_box(tl, T(ln.polygon))
            tl.set("BASELINE", points(T(ln.baseline), w, h, 2))
            A(A(tl, "Shape"), "Polygon", POINTS=points(T(ln.polygon), w, h, 3))
            words = line_words(glyphs[i]) if texts is not None and glyphs is not None and glyphs[i] else []
            if words:  # at least one String: ALTO's TextLine needs one
                for j, (word, conf, x0, x1, gl) in enumerate(words):
                    if j:
                        A(tl, "SP")
                    s = A(tl, "String", CONTENT=word, WC=_conf(conf),
                          CC=" ".join(str(int(round(9 * (1 - min(1.0, max(0.0, g.conf)))))) for g in gl))
                    _alto_box(s, T(_part(ln.polygon, x0, x1)))
                    for g in gl:
                        _alto_box(A(s, "Glyph", CONTENT=g.char, GC=_conf(g.conf)), T(_part(ln.polygon, g.x0, g.x1)))
                continue
            words = (texts[i].split() if texts is not None else []) or [""]
            for j, word in enumerate(words):
                if j:
                    A(tl, "SP")
                s = A(tl, "String", CONTENT=word)
                if confidences is not None and texts is not None:
                    s.set("WC", f"{min(1.0, max(0.0, confidences[i])):.4f}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
