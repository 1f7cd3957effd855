"""PAGE-XML pages as real producers write them, made by the tests themselves.

Every page image is random noise, so a crop equals exactly one slice of it: a test can
check that a line was cut from the right place by comparing with ``img[y0:y1+1, x0:x1+1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/{}"
YEARS = ["2009-03-16", "2010-01-12", "2010-03-19", "2013-07-15", "2016-07-15", "2017-07-15",
         "2018-07-15", "2019-07-15"]


def noise_image(path: Path, w: int = 400, h: int = 300, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return img


def coords(box: tuple[int, int, int, int], point_children: bool = False, scale: float = 1.0) -> str:
    x0, y0, x1, y1 = (int(v * scale) for v in box)
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if point_children:  # PAGE 2009/2010
        return "<Coords>" + "".join(f'<Point x="{x}" y="{y}"/>' for x, y in pts) + "</Coords>"
    return '<Coords points="' + " ".join(f"{x},{y}" for x, y in pts) + '"/>'


def box_slice(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0 : y1 + 1, x0 : x1 + 1]


def line(lid: str, box, text: str | None, point_children: bool = False, extra: str = "",
         attrs: str = "") -> str:
    te = f"<TextEquiv><Unicode>{text}</Unicode></TextEquiv>" if text is not None else ""
    return f'<TextLine id="{lid}" {attrs}>{coords(box, point_children)}{extra}{te}</TextLine>'


def page_doc(year: str, image: str, body: str, w: int | None = 400, h: int | None = 300,
             reading_order: str = "", prolog: str = "") -> str:
    size = f' imageWidth="{w}" imageHeight="{h}"' if w is not None else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}\n'
            f'<PcGts xmlns="{NS.format(year)}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            f"<Metadata><Creator>test</Creator><Created>2020-01-01T00:00:00</Created>"
            f"<LastChange>2020-01-01T00:00:00</LastChange></Metadata>\n"
            f'<Page imageFilename="{image}"{size}>\n{reading_order}{body}\n</Page></PcGts>\n')


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
