"""Page recognition: crop every TextLine of an uploaded PAGE-XML by its polygon, recognize
the crops, and write each line's text into its line-level ``TextEquiv/Unicode``.

Cropping reuses the PAGE-XML reader's recipe (``crop_polygon``: bounding box, outside pixels
set to the inside median), so served pages are cut exactly like the training lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from lxml import etree

from inkpack.data.formats.pagexml import crop_polygon, line_polygon, text_lines
from inkpack.errors import BadSampleError, InkpackError

# elements that follow TextEquiv inside a PAGE TextLine (2013+ schemas)
_AFTER_TEXTEQUIV = ("TextStyle", "UserDefined", "Labels")


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


@dataclass
class PageJob:
    tree: etree._ElementTree
    lines: list[etree._Element]
    crops: list[np.ndarray]
    errors: list[str] = field(default_factory=list)


def parse_page_bytes(data: bytes, name: str = "PAGE-XML") -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise InkpackError(f"{name}: malformed XML ({e.msg}, line {e.lineno})") from None
    if root is None or not any(isinstance(el.tag, str) and _local(el.tag) == "Page" for el in root.iter()):
        raise InkpackError(f"{name}: no <Page> element (not PAGE-XML?)")
    return etree.ElementTree(root)


def prepare_page(gray: np.ndarray, xml: bytes, name: str = "PAGE-XML") -> PageJob:
    """Parse and crop; lines with unusable polygons are reported in ``errors`` and left as they are."""
    tree = parse_page_bytes(xml, name)
    page = next(el for el in tree.getroot().iter() if isinstance(el.tag, str) and _local(el.tag) == "Page")
    w, h = page.get("imageWidth"), page.get("imageHeight")
    if w and h and w.isdigit() and h.isdigit() and (int(w), int(h)) != (gray.shape[1], gray.shape[0]):
        raise InkpackError(
            f"{name}: the XML is for a {w}x{h} image but the uploaded image is {gray.shape[1]}x{gray.shape[0]}"
        )
    job = PageJob(tree, [], [])
    for line in text_lines(page):
        where = f"TextLine {line.get('id', '?')}"
        try:
            job.crops.append(crop_polygon(gray, line_polygon(line, where), where))
            job.lines.append(line)
        except BadSampleError as e:
            job.errors.append(str(e))
    return job


def set_line_text(line: etree._Element, text: str, conf: float | None) -> None:
    ns = etree.QName(line).namespace
    tag = (lambda n: f"{{{ns}}}{n}") if ns else (lambda n: n)
    te = _child(line, "TextEquiv")
    if te is None:
        te = etree.Element(tag("TextEquiv"))
        follow = next((c for c in line if isinstance(c.tag, str) and _local(c.tag) in _AFTER_TEXTEQUIV), None)
        if follow is not None:
            follow.addprevious(te)
        else:
            line.append(te)
    uni = _child(te, "Unicode")
    if uni is None:
        uni = etree.SubElement(te, tag("Unicode"))
    for c in list(te):  # a PlainText that disagrees with Unicode would mislead readers
        if isinstance(c.tag, str) and _local(c.tag) == "PlainText":
            te.remove(c)
    uni.text = text
    if conf is not None:
        te.set("conf", f"{conf:.4f}")


def fill_page(job: PageJob, results) -> bytes:
    for line, res in zip(job.lines, results):
        conf = float(np.mean(res.confidences)) if res.confidences else None
        set_line_text(line, res.text, conf)
    return etree.tostring(job.tree, xml_declaration=True, encoding="UTF-8", standalone=True)
