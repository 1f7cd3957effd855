"""Whole pages: ``segment_page`` (image -> lines in reading order) and ``recognize_page``
(segment, crop each line by its polygon as the line data was made, recognize).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from inkpack.data.formats.pagexml import crop_polygon
from inkpack.data.images import load_gray
from inkpack.errors import BadSampleError, InputError, InputTooLargeError
from inkpack.segment.data import prepare
from inkpack.segment.model import SegNet, fold_batchnorm, load_segmenter
from inkpack.segment.postprocess import Line, Params, maps_to_lines


@dataclass
class Glyph:
    """One recognized character: its confidence (the greedy CTC path's highest probability of
    it over the frames it was read at) and the page x range ``[x0, x1)`` those frames cover."""

    char: str
    conf: float
    x0: float
    x1: float


@dataclass
class PageResult:
    width: int
    height: int
    lines: list[Line]
    texts: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    image: str = ""
    glyphs: list[list[Glyph]] = field(default_factory=list)  # per line; [] where the recognizer gave none
    warnings: list[str] = field(default_factory=list)   # lines the recognizer refused
    turns: int = 0   # quarter turns counter-clockwise that made the page upright; lines and glyphs
    #                  are in the turned page's pixels (``inkpack.segment.orient.back`` maps them)

    @property
    def orientation(self) -> float:
        """PAGE's ``@orientation``: degrees the image must be turned clockwise to be upright."""
        o = (-90 * self.turns) % 360
        return float(o - 360 if o > 180 else o)

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


class Segmenter:
    """A loaded segmentation model (``path``: stem/.json/.safetensors, default the bundled one)."""

    def __init__(self, path: str | os.PathLike | None = None, model: SegNet | None = None,
                 config: dict | None = None, params: Params | None = None) -> None:
        if model is None:
            model, config = load_segmenter(path)
            fold_batchnorm(model)
        self.model = model.eval()
        self.config = config
        self.params = params or Params(**config.get("postprocess", {}))

    @torch.inference_mode()
    def maps(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """Probability maps [C, h, w] at half the network input's resolution and the scan->input scale."""
        x, s = prepare(gray, int(self.config["long_side"]))
        prob = torch.sigmoid(self.model(torch.from_numpy(x)[None, None]))[0].numpy()
        h, w = gray.shape
        vh, vw = max(1, round(h * s / 2)), max(1, round(w * s / 2))
        return prob[:, :vh, :vw], s

    def segment(self, image) -> list[Line]:
        gray = to_gray(image)
        prob, s = self.maps(gray)
        return maps_to_lines(prob, to_page=2.0 / s, p=self.params)

    def segment_upright(self, gray: np.ndarray, check_180: bool = False) -> tuple[int, np.ndarray, list[Line]]:
        """(quarter turns k, the page turned upright, its lines): a page scanned sideways is
        found at no cost for upright pages; upside down only with ``check_180`` (a second
        segmentation): :func:`inkpack.segment.orient.upright`."""
        from inkpack.segment.orient import upright

        return upright(gray, self.segment, check_180)


def to_gray(image) -> np.ndarray:
    """A path, bytes, PIL image or numpy array (gray, RGB or RGBA) -> 2-D uint8."""
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[2] in (3, 4):
            a = cv2.cvtColor(a[..., :3].astype(np.uint8), cv2.COLOR_RGB2GRAY)
        if a.ndim != 2 or a.size == 0:
            raise InputError(f"page image array of shape {image.shape}: expected 2-D gray or H x W x 3")
        return a.astype(np.uint8) if a.dtype != np.uint8 else a
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("L"))
    return load_gray(image)


def segment_page(image, model: Segmenter | str | os.PathLike | None = None) -> list[Line]:
    """Lines of a page (baseline, polygon, region, order) in page pixel coordinates."""
    seg = model if isinstance(model, Segmenter) else Segmenter(model)
    return seg.segment(image)


def crop_line(gray: np.ndarray, polygon: np.ndarray) -> np.ndarray | None:
    """Bounding-box crop, pixels outside the polygon set to the median gray inside it (as the
    line data was made: :func:`inkpack.data.formats.pagexml.crop_polygon`); None when the
    polygon is empty or outside the page."""
    try:
        return crop_polygon(gray, polygon)
    except BadSampleError:
        return None


def recognize_lines(gray: np.ndarray, polygons: list[np.ndarray], recognizer) -> tuple[list[str], list[float]]:
    """Texts and mean confidences; ``recognizer``: an image :class:`inkpack.infer.recognizer.Recognizer`
    (what ``inkpack.load()`` returns)."""
    texts, confs, _ = read_lines(gray, polygons, recognizer)
    return texts, confs


def _recognize(recognizer, crops: list, idx: list[int], errors: list[str] | None) -> list:
    """The recognizer's results for ``crops``; a line it refuses (too wide, unreadable) is read
    as None and reported in ``errors`` instead of failing the page."""
    try:
        return recognizer.recognize(crops)
    except (BadSampleError, InputTooLargeError):
        out = []
        for i, c in zip(idx, crops):
            try:
                out.append(recognizer.recognize([c])[0])
            except (BadSampleError, InputTooLargeError) as e:
                out.append(None)
                if errors is not None:
                    errors.append(f"line {i + 1} not read: {e}")
        return out


def read_lines(gray: np.ndarray, polygons: list[np.ndarray], recognizer, errors: list[str] | None = None
               ) -> tuple[list[str], list[float], list[list[Glyph]]]:
    """Texts, mean confidences and, where the recognizer gives per-character confidences and
    positions (``Recognition.positions``: x ranges of the crop), each line's :class:`Glyph` s
    with their x ranges moved from the crop to the page (the crop starts at the polygon's left
    edge: :func:`crop_line`). A line the recognizer refuses is empty, confidence 0, and named
    in ``errors``."""
    crops = [crop_line(gray, p) for p in polygons]
    idx = [i for i, c in enumerate(crops) if c is not None]
    texts, confs = [""] * len(crops), [0.0] * len(crops)
    glyphs: list[list[Glyph]] = [[] for _ in crops]
    if idx:
        out = _recognize(recognizer, [crops[i] for i in idx], idx, errors)
        for i, r in zip(idx, out):
            if r is None:
                continue
            texts[i] = r if isinstance(r, str) else r.text
            c = getattr(r, "confidences", None)
            confs[i] = float(np.mean(c)) if c else (1.0 if isinstance(r, str) else 0.0)
            pos = getattr(r, "positions", None)
            if c and pos and len(c) == len(pos) == len(texts[i]):
                ox = max(0, int(np.floor(np.asarray(polygons[i])[:, 0].min())))
                glyphs[i] = [Glyph(ch, float(cf), ox + float(a), ox + float(b))
                             for ch, cf, (a, b) in zip(texts[i], c, pos)]
    return texts, confs, glyphs


def recognize_page(image_path, seg_model: Segmenter | str | None = None, line_recognizer=None,
                   check_180: bool = False) -> PageResult:
    """Segment a page (turned upright first when it was scanned sideways, or with ``check_180``
    upside down), recognize each line; ``.text`` is the page text in reading order."""
    if line_recognizer is None:
        from inkpack.api import load

        line_recognizer = load()
    seg = seg_model if isinstance(seg_model, Segmenter) else Segmenter(seg_model)
    gray = to_gray(image_path)
    k, up, lines = seg.segment_upright(gray, check_180)
    warnings: list[str] = []
    texts, confs, glyphs = read_lines(up, [ln.polygon for ln in lines], line_recognizer, warnings)
    name = str(image_path) if isinstance(image_path, (str, os.PathLike)) else ""
    return PageResult(gray.shape[1], gray.shape[0], lines, texts, confs, name, glyphs=glyphs, warnings=warnings,
                      turns=k)
