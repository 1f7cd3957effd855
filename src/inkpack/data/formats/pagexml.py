"""PAGE-XML pages (any schema year): each TextLine cropped by its polygon.

The crop is the polygon's bounding box; pixels outside the polygon are filled with the
median gray of the pixels inside it (the local paper colour), so neighbouring lines
do not intrude — the same recipe the shipped Hooker lines were made with.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from lxml import etree

from inkpack.data.formats.tsv import LineRecord
from inkpack.data.images import load_gray
from inkpack.errors import BadSampleError, InkpackError


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_points(s: str, where: str) -> np.ndarray:
    try:
        pts = np.array([[float(v) for v in p.split(",")] for p in s.split()], dtype=np.float64)
    except ValueError:
        raise BadSampleError(f"{where}: malformed points {s[:40]!r}") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise BadSampleError(f"{where}: polygon needs at least 3 x,y points")
    return pts


def crop_polygon(page: np.ndarray, pts: np.ndarray, where: str = "line") -> np.ndarray:
    """Bounding-box crop of ``pts`` with outside pixels set to the inside median."""
    h, w = page.shape
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise BadSampleError(f"{where}: polygon is empty or outside the {w}x{h} image")
    crop = page[y0:y1, x0:x1].copy()
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts - [x0, y0]).astype(np.int32)], 1)
    inside = crop[mask == 1]
    if inside.size:
        crop[mask == 0] = np.uint8(np.median(inside))
    return crop


def parse_page(xml_path: str) -> tuple[etree._ElementTree, etree._Element]:
    try:
        tree = etree.parse(xml_path)
    except OSError:
        raise InkpackError(f"{xml_path}: file not found or unreadable") from None
    except etree.XMLSyntaxError as e:
        raise InkpackError(f"{xml_path}: malformed XML ({e.msg}, line {e.lineno})") from None
    page = next((el for el in tree.iter() if isinstance(el.tag, str) and _local(el.tag) == "Page"), None)
    if page is None:
        raise InkpackError(f"{xml_path}: no <Page> element (not PAGE-XML?)")
    return tree, page


def text_lines(page: etree._Element) -> list[etree._Element]:
    return [el for el in page.iter() if isinstance(el.tag, str) and _local(el.tag) == "TextLine"]


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if isinstance(c.tag, str) and _local(c.tag) == name), None)


def line_text(line: etree._Element) -> str:
    """The line-level TextEquiv/Unicode (not the words' or glyphs')."""
    te = _child(line, "TextEquiv")
    uni = _child(te, "Unicode") if te is not None else None
    return (uni.text or "") if uni is not None else ""


def line_polygon(line: etree._Element, where: str) -> np.ndarray:
    coords = _child(line, "Coords")
    if coords is None or not coords.get("points"):
        raise BadSampleError(f"{where}: TextLine without Coords points")
    return parse_points(coords.get("points"), where)


def page_image_path(xml_path: str, page: etree._Element) -> str:
    name = page.get("imageFilename")
    if not name:
        raise InkpackError(f"{xml_path}: <Page> has no imageFilename")
    base = os.path.dirname(os.path.abspath(xml_path))
    for cand in (os.path.join(base, name), os.path.join(base, os.path.basename(name)),
                 os.path.join(os.path.dirname(base), os.path.basename(name))):
        if os.path.exists(cand):
            return cand
    raise InkpackError(f"{xml_path}: page image {name!r} not found next to the XML")


def read_pagexml(xml_path: str, require_text: bool = True) -> tuple[list[LineRecord], list[str]]:
    """Records with ``crop`` set; lines with empty text (if required) or bad polygons are reported."""
    _, page = parse_page(xml_path)
    img_path = page_image_path(xml_path, page)
    gray = load_gray(img_path)
    records, errors = [], []
    stem = Path(xml_path).stem
    for line in text_lines(page):
        lid = line.get("id", "?")
        where = f"{xml_path}: TextLine {lid}"
        text = line_text(line)
        if require_text and not text.strip():
            errors.append(f"{where}: empty transcription")
            continue
        try:
            crop = crop_polygon(gray, line_polygon(line, where), where)
        except BadSampleError as e:
            errors.append(str(e))
            continue
        records.append(LineRecord(id=f"{stem}_{lid}", path=img_path, text=text, crop=crop))
    return records, errors


def read_pagexml_source(source: str) -> tuple[list[LineRecord], list[str]]:
    """A PAGE-XML file, or every ``*.xml`` in a folder (sorted)."""
    if os.path.isdir(source):
        files = sorted(str(p) for p in Path(source).glob("*.xml"))
        if not files:
            raise InkpackError(f"{source}: no .xml files in folder")
    elif os.path.exists(source):
        files = [source]
    else:
        raise InkpackError(f"{source}: file not found")
    records, errors = [], []
    for f in files:
        r, e = read_pagexml(f)
        records += r
        errors += e
    return records, errors
