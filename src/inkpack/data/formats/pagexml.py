"""PAGE-XML pages (any schema year, 2009 to 2019): each TextLine cropped by its polygon.

The crop is the polygon's bounding box; pixels outside the polygon are filled with the
median gray of the pixels inside it (the local paper colour), so neighbouring lines
do not intrude — the same recipe the shipped Hooker lines were made with.

Read as producers write them:

* polygons from ``Coords/@points`` (2013+) or ``Coords/Point[@x, @y]`` children (2009/2010);
* the line text from the line-level ``TextEquiv`` with the lowest ``@index`` (the main one);
* lines in reading order: ``ReadingOrder`` groups (``OrderedGroup``/``RegionRefIndexed``,
  nested groups, unordered groups), else Transkribus' ``custom="readingOrder {index:N;}"``,
  else document order (see :mod:`inkpack.data.formats.page_order`);
* the page image from ``imageFilename`` relative to the XML's folder, its parent, an OCR-D
  workspace root (a folder holding ``mets.xml``) or an ``images_dir`` given by the user;
* ``imageWidth``/``imageHeight`` checked against the decoded image: polygons are scaled when
  the image is a proportional resize, and the page is refused otherwise.

In a folder, a page that cannot be used (malformed XML, a ``mets.xml``, a missing or
mismatched image) is skipped and reported, never aborting the others.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
from lxml import etree

from inkpack.data.formats.page_order import lines_in_reading_order
from inkpack.data.formats.tsv import LineRecord
from inkpack.data.images import load_gray
from inkpack.errors import BadSampleError, InkpackError, InputError

MAX_COORD = 1e7  # pixels; far beyond any scanned page, well within int32
PAGE_NAMESPACES = {
    year: f"http://schema.primaresearch.org/PAGE/gts/pagecontent/{year}"
    for year in ("2009-03-16", "2010-01-12", "2010-03-19", "2013-07-15", "2016-07-15",
                 "2017-07-15", "2018-07-15", "2019-07-15")
}


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def safe_parser(**extra) -> etree.XMLParser:
    """No entity expansion, no DTD loading, no network: XML bombs and XXE stay inert."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, **extra)


def parse_points(s: str, where: str) -> np.ndarray:
    try:
        pts = np.array([[float(v) for v in p.split(",")] for p in s.split()], dtype=np.float64)
    except ValueError:
        raise BadSampleError(f"{where}: malformed points {s[:40]!r}") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise BadSampleError(f"{where}: polygon needs at least 3 x,y points")
    if not (np.abs(pts) < MAX_COORD).all():  # also refuses NaN and infinity
        raise BadSampleError(f"{where}: polygon coordinates beyond +-{MAX_COORD:g} or not finite")
    return pts


def coords_points(coords: etree._Element | None, where: str) -> np.ndarray:
    """``Coords/@points`` (2013+) or its ``Point x= y=`` children (2009/2010)."""
    if coords is None:
        raise BadSampleError(f"{where}: TextLine without Coords")
    if coords.get("points"):
        return parse_points(coords.get("points"), where)
    pts = [c for c in coords if _local(c.tag) == "Point"]
    if not pts:
        raise BadSampleError(f"{where}: TextLine without Coords points")
    return parse_points(" ".join(f"{p.get('x', '')},{p.get('y', '')}" for p in pts), where)


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


def polygon_box_area(pts: np.ndarray) -> int:
    """Pixels of the bounding box ``crop_polygon`` would copy (before clipping to the image)."""
    span = np.ceil(pts.max(0)) - np.floor(pts.min(0)) + 1
    return int(span[0]) * int(span[1])


def find_page(root: etree._Element | None, name: str) -> etree._Element:
    if root is None:
        raise InputError(f"{name}: empty XML document")
    if _local(root.tag) == "mets":
        raise InputError(f"{name}: a METS file, not PAGE-XML (give the PAGE files' folder)")
    page = next((el for el in root.iter() if _local(el.tag) == "Page"), None)
    if page is None:
        raise InputError(f"{name}: no <Page> element (not PAGE-XML?)")
    return page


def parse_page_data(data: bytes, name: str = "PAGE-XML") -> tuple[etree._ElementTree, etree._Element]:
    """The document (its DOCTYPE, comments and processing instructions kept) and its ``Page``."""
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as e:
        msg = " ".join(str(e.msg).split())  # libxml2 messages can hold newlines
        where = "" if "line" in msg else f", line {e.lineno}"
        raise InputError(f"{name}: malformed XML ({msg}{where})") from None
    return root.getroottree(), find_page(root, name)


def parse_page(xml_path: str) -> tuple[etree._ElementTree, etree._Element]:
    try:
        data = Path(xml_path).read_bytes()
    except OSError:
        raise InputError(f"{xml_path}: file not found or unreadable") from None
    return parse_page_data(data, xml_path)


def text_lines(page: etree._Element) -> list[etree._Element]:
    """Every TextLine of the page, in reading order."""
    return lines_in_reading_order(page)


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def main_text_equiv(line: etree._Element) -> etree._Element | None:
    """The line-level ``TextEquiv`` with the lowest ``@index`` (unindexed ones after, in order)."""
    tes = [c for c in line if _local(c.tag) == "TextEquiv"]

    def key(item):
        pos, te = item
        try:
            return (0, int(te.get("index")), pos)
        except (TypeError, ValueError):
            return (1, 0, pos)

    return min(enumerate(tes), key=key)[1] if tes else None


def line_text(line: etree._Element) -> str:
    """The main line-level TextEquiv's Unicode (not the words' or glyphs')."""
    te = main_text_equiv(line)
    uni = _child(te, "Unicode") if te is not None else None
    return (uni.text or "") if uni is not None else ""


def line_polygon(line: etree._Element, where: str) -> np.ndarray:
    return coords_points(_child(line, "Coords"), where)


def workspace_roots(folder: str) -> list[str]:
    """``folder`` and its ancestors that hold a ``mets.xml`` (OCR-D workspaces), nearest first."""
    out, d = [], os.path.abspath(folder)
    while True:
        if os.path.isfile(os.path.join(d, "mets.xml")):
            out.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            return out
        d = parent


def page_image_path(xml_path: str, page: etree._Element, images_dir: str | None = None) -> str:
    """Resolve ``imageFilename`` the way producers write it (see the module docstring)."""
    name = page.get("imageFilename")
    if not name:
        raise InputError(f"{xml_path}: <Page> has no imageFilename")
    ref = name
    if "://" in name:  # file:// URLs point at a path; other URLs can only match by basename
        u = urlparse(name)
        ref = unquote(u.path) if u.scheme == "file" else os.path.basename(unquote(u.path))
    ref = ref.replace("\\", "/")
    base = os.path.basename(ref)
    xml_dir = os.path.dirname(os.path.abspath(xml_path))
    dirs = [images_dir] if images_dir else []
    dirs += [xml_dir, os.path.dirname(xml_dir), *workspace_roots(xml_dir)]
    cands = [ref] if os.path.isabs(ref) else []
    for d in dirs:
        cands += [os.path.join(d, ref), os.path.join(d, base)]
    for cand in cands:
        if os.path.isfile(cand):
            return cand
    where = f"{images_dir}, " if images_dir else ""
    raise InputError(f"{xml_path}: page image {name!r} not found (looked in {where}the XML's folder, "
                     "its parent and any OCR-D workspace root; use --images DIR)")


def page_scale(page: etree._Element, width: int, height: int, name: str,
               image_name: str = "the image") -> tuple[float, float]:
    """Factors from PAGE coordinates to the decoded image's pixels.

    ``(1, 1)`` when ``imageWidth``/``imageHeight`` are absent or match; the resize factors when
    the image is a proportional resize of the declared one; ``InputError`` otherwise.
    """
    try:
        dw, dh = int(float(page.get("imageWidth", ""))), int(float(page.get("imageHeight", "")))
    except (ValueError, OverflowError):
        return 1.0, 1.0
    if dw <= 0 or dh <= 0 or (dw, dh) == (width, height):
        return 1.0, 1.0
    sx, sy = width / dw, height / dh
    if abs(width - dw * sy) <= max(2.0, 0.01 * width) and abs(height - dh * sx) <= max(2.0, 0.01 * height):
        return sx, sy
    hint = " (rotated? check the EXIF orientation)" if (dw, dh) == (height, width) else ""
    raise InputError(f"{name}: the XML is for a {dw}x{dh} image but {image_name} is {width}x{height}"
                     f"{hint}; not a proportional resize, refusing to crop from the wrong place")


def read_pagexml(xml_path: str, require_text: bool = True,
                 images_dir: str | None = None) -> tuple[list[LineRecord], list[str]]:
    """Records with ``crop`` set, in reading order; unusable lines are reported in the errors."""
    _, page = parse_page(xml_path)
    img_path = page_image_path(xml_path, page, images_dir)
    gray = load_gray(img_path)
    scale = np.array(page_scale(page, gray.shape[1], gray.shape[0], xml_path, f"image {img_path}"))
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
            crop = crop_polygon(gray, line_polygon(line, where) * scale, where)
        except BadSampleError as e:
            errors.append(str(e))
            continue
        records.append(LineRecord(id=f"{stem}_{lid}", path=img_path, text=text, crop=crop))
    return records, errors


def pagexml_files(source: str) -> list[str]:
    """A PAGE-XML file, or every ``*.xml`` in a folder (sorted; a ``mets.xml`` among them is skipped later)."""
    if os.path.isdir(source):
        files = sorted(str(p) for p in Path(source).glob("*.xml"))
        if not files:
            raise InputError(f"{source}: no .xml files in folder")
        if all(os.path.basename(f).lower() == "mets.xml" for f in files):
            raise InputError(f"{source}: only a mets.xml here (an OCR-D workspace? give one of its PAGE folders)")
        return files
    if os.path.exists(source):
        return [source]
    raise InputError(f"{source}: file not found")


def read_pagexml_source(source: str, images_dir: str | None = None,
                        require_text: bool = True) -> tuple[list[LineRecord], list[str]]:
    """Lines of a PAGE-XML file, or of every page in a folder (a bad page is skipped and reported).

    A single file that cannot be used raises; in a folder the page's error joins the list.
    """
    files = pagexml_files(source)
    records, errors = [], []
    for f in files:
        try:
            r, e = read_pagexml(f, require_text, images_dir)
        except InkpackError as e:
            if len(files) == 1 and not os.path.isdir(source):
                raise
            errors.append(f"skipped page: {e}")
            continue
        records += r
        errors += e
    return records, errors
