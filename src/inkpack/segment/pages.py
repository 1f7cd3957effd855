"""Ground-truth pages for segmentation: regions, line polygons, baselines, text.

Parsed with lxml without entity resolution, DTD loading or network access (a PAGE-XML
file from outside is untrusted). Any PAGE schema year; coordinates as in the XML.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree

from inkpack.errors import InputError

SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                              dtd_validation=False, huge_tree=False, remove_comments=True)
_RO = re.compile(r"readingOrder\s*\{\s*index\s*:\s*(\d+)")


@dataclass
class GTLine:
    id: str
    polygon: np.ndarray            # [k, 2] float x, y
    baseline: np.ndarray | None    # [m, 2] float x, y (None when the XML has none)
    text: str = ""
    region: str = ""


@dataclass
class GTPage:
    xml: str
    image: str
    width: int
    height: int
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # id -> polygon
    lines: list[GTLine] = field(default_factory=list)             # in reading order


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(el, name):
    return next((c for c in el if _local(c.tag) == name), None)


def parse_points(s: str | None, minimum: int = 2) -> np.ndarray | None:
    if not s:
        return None
    try:
        pts = np.array([[float(v) for v in p.split(",")] for p in s.split()], dtype=np.float64)
    except ValueError:
        return None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < minimum:
        return None
    return pts


def _ro_index(el, default: int) -> int:
    m = _RO.search(el.get("custom", "") or "")
    return int(m.group(1)) if m else default


def read_gt_page(xml_path: str | os.PathLike) -> GTPage:
    xml_path = str(xml_path)
    try:
        tree = etree.parse(xml_path, SAFE_PARSER)
    except OSError:
        raise InputError(f"{xml_path}: file not found or unreadable") from None
    except etree.XMLSyntaxError as e:
        raise InputError(f"{xml_path}: malformed XML ({e.msg})") from None
    page = next((el for el in tree.iter() if _local(el.tag) == "Page"), None)
    if page is None:
        raise InputError(f"{xml_path}: no <Page> element (not PAGE-XML?)")
    try:
        w, h = int(page.get("imageWidth")), int(page.get("imageHeight"))
    except (TypeError, ValueError):
        raise InputError(f"{xml_path}: <Page> without a valid imageWidth/imageHeight") from None
    name = page.get("imageFilename") or (Path(xml_path).stem + ".jpg")
    img = Path(xml_path).parent / os.path.basename(name)
    if not img.exists():
        img = Path(xml_path).with_suffix(".jpg")
    gt = GTPage(xml=xml_path, image=str(img), width=w, height=h)
    regions = [el for el in page.iter() if _local(el.tag) == "TextRegion"]
    # region order: the ReadingOrder refs if present, else custom index, else document order
    refs = [el.get("regionRef") for el in page.iter() if _local(el.tag) == "RegionRefIndexed"]
    idx = [el.get("index") for el in page.iter() if _local(el.tag) == "RegionRefIndexed"]
    pos = {r: int(i) for r, i in zip(refs, idx) if r and i and i.isdigit()}
    regions.sort(key=lambda r: (pos.get(r.get("id"), 10**6 + _ro_index(r, 0)), ))
    for ri, reg in enumerate(regions):
        rid = reg.get("id", f"r{ri}")
        c = _child(reg, "Coords")
        poly = parse_points(c.get("points") if c is not None else None, 3)
        if poly is not None:
            gt.regions[rid] = poly
        lines = [el for el in reg if _local(el.tag) == "TextLine"]
        lines = sorted(enumerate(lines), key=lambda t: _ro_index(t[1], t[0]))
        for _, ln in lines:
            c = _child(ln, "Coords")
            poly = parse_points(c.get("points") if c is not None else None, 3)
            b = _child(ln, "Baseline")
            base = parse_points(b.get("points") if b is not None else None, 2)
            if poly is None and base is None:
                continue
            te = _child(ln, "TextEquiv")
            uni = _child(te, "Unicode") if te is not None else None
            text = (uni.text or "") if uni is not None else ""
            gt.lines.append(GTLine(ln.get("id", "?"), poly if poly is not None else _band(base),
                                   base, text, rid))
    return gt


def _band(base: np.ndarray, up: float = 20.0, down: float = 6.0) -> np.ndarray:
    return np.concatenate([base - [0, up], (base + [0, down])[::-1]])


def page_pairs(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """(image, xml) pairs of a folder: every ``*.xml`` whose page image exists."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    pairs = []
    for x in sorted(folder.glob("*.xml")):
        for ext in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
            if x.with_suffix(ext).exists():
                pairs.append((str(x.with_suffix(ext)), str(x)))
                break
    if not pairs:
        raise InputError(f"{folder}: no page images with PAGE-XML")
    return pairs
