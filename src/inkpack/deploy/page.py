"""Page recognition: crop every TextLine of a PAGE-XML by its polygon, recognize the crops, and
write each line's text into its main line-level ``TextEquiv/Unicode`` (lowest ``@index``).

Memory is bounded by the work, not by the page: lines are cropped, recognized and written back
a small batch at a time (``batch_size`` crops alive at once), and a page is refused before any
crop is made when it names more than ``max_lines`` lines or when its line boxes together cover
more than ``max_crop_ratio`` times the page (60 full-page lines would otherwise copy the page
60 times). The returned XML keeps the client's DOCTYPE, comments and processing instructions.

Cropping reuses the PAGE-XML reader's recipe (``crop_polygon``: bounding box, outside pixels
set to the inside median), so served pages are cut exactly like the training lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree

from inkpack.data.formats.pagexml import (
    crop_polygon,
    line_polygon,
    main_text_equiv,
    page_image_path,
    page_scale,
    pagexml_files,
    parse_page_data,
    polygon_box_area,
    text_lines,
)
from inkpack.errors import BadSampleError, InkpackError, InputError, InputTooLargeError

DEFAULT_MAX_LINES = 2000
DEFAULT_MAX_CROP_RATIO = 25.0
DEFAULT_BATCH = 8
# elements that follow TextEquiv inside a PAGE TextLine (2013+ schemas)
_AFTER_TEXTEQUIV = ("TextStyle", "UserDefined", "Labels")
_OLD_SCHEMAS = ("2009-", "2010-")  # TextEquiv has no @conf before 2013


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


@dataclass
class PageJob:
    """A parsed page: its lines in reading order with their polygons in image pixels."""

    tree: etree._ElementTree
    lines: list[etree._Element]
    polygons: list[np.ndarray]
    errors: list[str] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # only filled by ``prepare_page``


@dataclass
class PageResult:
    xml: bytes
    texts: list[str]  # recognized lines, in reading order
    line_ids: list[str]
    errors: list[str]  # lines left as they were, and why
    results: list = field(default_factory=list)  # what ``recognize`` returned, per line in ``texts``


def parse_page_bytes(data: bytes, name: str = "PAGE-XML") -> etree._ElementTree:
    return parse_page_data(data, name)[0]


def open_page(xml: bytes, width: int, height: int, name: str = "PAGE-XML",
              image_name: str = "the uploaded image", max_lines: int = DEFAULT_MAX_LINES,
              max_crop_ratio: float = DEFAULT_MAX_CROP_RATIO) -> PageJob:
    """Parse, check the declared size against ``width`` x ``height`` and the limits; crop nothing."""
    tree, page = parse_page_data(xml, name)
    scale = np.array(page_scale(page, width, height, name, image_name))
    lines = text_lines(page)
    if len(lines) > max_lines:
        raise InputTooLargeError(f"{name}: page too large: {len(lines)} TextLines is over the limit "
                                 f"of {max_lines} lines per page")
    job = PageJob(tree, [], [])
    area = 0
    for line in lines:
        where = f"TextLine {line.get('id', '?')}"
        try:
            pts = line_polygon(line, where) * scale
        except BadSampleError as e:
            job.errors.append(str(e))
            continue
        area += polygon_box_area(np.clip(pts, 0, [width, height]))
        job.lines.append(line)
        job.polygons.append(pts)
    if area > max_crop_ratio * width * height:
        raise InputTooLargeError(f"{name}: page too large: its line boxes cover {area / (width * height):.0f}x "
                                 f"the page (limit {max_crop_ratio:g}x)")
    return job


def iter_crops(job: PageJob, gray: np.ndarray) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(line number, crop)`` one at a time; ``None`` (and an entry in ``job.errors``) for a bad line."""
    for k, (line, pts) in enumerate(zip(job.lines, job.polygons)):
        where = f"TextLine {line.get('id', '?')}"
        try:
            yield k, crop_polygon(gray, pts, where)
        except BadSampleError as e:
            job.errors.append(str(e))
            yield k, None


def recognize_page(gray: np.ndarray, xml: bytes, recognize: Callable[[list[np.ndarray]], Sequence],
                   name: str = "PAGE-XML", image_name: str = "the uploaded image",
                   batch_size: int = DEFAULT_BATCH, max_lines: int = DEFAULT_MAX_LINES,
                   max_crop_ratio: float = DEFAULT_MAX_CROP_RATIO) -> PageResult:
    """Fill a page streaming: crop → ``recognize(crops)`` → write back, ``batch_size`` lines at a time.

    ``recognize`` maps a list of grayscale crops to results with ``.text`` (and optionally
    ``.confidences``), or to plain strings.
    """
    if batch_size < 1:
        raise InkpackError(f"{name}: batch size must be at least 1, got {batch_size}")
    job = open_page(xml, gray.shape[1], gray.shape[0], name, image_name, max_lines, max_crop_ratio)
    done: list[tuple[int, str]] = []
    raw: list = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        try:
            results = list(recognize([c for _, c in pending]))
        except BadSampleError:  # one line refused (too wide, ...): find it, keep the others
            results = [_one(recognize, c, job.lines[k], job.errors) for k, c in pending]
        for (k, _), res in zip(pending, results):
            if res is None:
                continue
            set_line_text(job.lines[k], *_text_conf(res))
            done.append((k, _text_conf(res)[0]))
            raw.append(res)
        pending.clear()

    for k, crop in iter_crops(job, gray):
        if crop is not None:
            pending.append((k, crop))
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return PageResult(page_bytes(job.tree), [t for _, t in done],
                      [job.lines[k].get("id", "?") for k, _ in done], job.errors, raw)


def _one(recognize, crop: np.ndarray, line: etree._Element, errors: list[str]):
    try:
        return recognize([crop])[0]
    except BadSampleError as e:
        errors.append(f"TextLine {line.get('id', '?')}: {e}")
        return None


def _text_conf(res) -> tuple[str, float | None]:
    if isinstance(res, str):
        return res, None
    confs = getattr(res, "confidences", None)
    return res.text, (float(np.mean(confs)) if confs is not None and len(confs) else None)


def set_line_text(line: etree._Element, text: str, conf: float | None) -> None:
    """Write into the main (lowest ``@index``) line-level TextEquiv, creating one if needed."""
    ns = etree.QName(line).namespace
    tag = (lambda n: f"{{{ns}}}{n}") if ns else (lambda n: n)
    te = main_text_equiv(line)
    if te is None:
        te = etree.Element(tag("TextEquiv"))
        follow = next((c for c in line if _local(c.tag) in _AFTER_TEXTEQUIV), None)
        if follow is not None:
            follow.addprevious(te)
        else:
            line.append(te)
    uni = _child(te, "Unicode")
    if uni is None:
        uni = etree.SubElement(te, tag("Unicode"))
    for c in list(te):  # a PlainText that disagrees with Unicode would mislead readers
        if _local(c.tag) == "PlainText":
            te.remove(c)
    uni.text = text
    if conf is not None and not any(y in (ns or "") for y in _OLD_SCHEMAS):
        te.set("conf", f"{conf:.4f}")


def page_bytes(tree: etree._ElementTree) -> bytes:
    """The document as UTF-8, with its DOCTYPE and top-level comments/PIs."""
    standalone = tree.docinfo.standalone
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8",
                          **({"standalone": standalone} if standalone is not None else {}))


# ---- file and folder level (the `recognize` command on PAGE-XML) -------------------------

def crops_recognizer(rec) -> Callable[[list[np.ndarray]], list]:
    """The ``recognize`` callable for an ``inkpack.load`` line recognizer (``prepare_input`` and
    ``run_prepared``): one forward pass per batch of crops, results with text and confidences."""
    return lambda crops: rec.run_prepared([rec.prepare_input(c) for c in crops])


@dataclass
class PageFileReport:
    pages: int = 0
    lines: int = 0
    skipped_pages: list[str] = field(default_factory=list)
    skipped_lines: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def recognize_pagexml(source: str, recognize: Callable[[list[np.ndarray]], Sequence], out: str | None,
                      images_dir: str | None = None, batch_size: int = DEFAULT_BATCH,
                      max_lines: int = DEFAULT_MAX_LINES, max_pixels: int | None = None,
                      on_page: Callable[[str, PageResult], None] | None = None) -> PageFileReport:
    """Fill a PAGE-XML file, or every page of a folder, writing the filled XML under ``out``.

    ``out``: for a folder, an output folder (created); for one file, the output file when it
    ends in ``.xml`` and is not an existing folder, else a folder to write it into (created).
    Output files keep the input's name. ``None`` writes nothing (``on_page`` still sees each
    page). A page that cannot be used is skipped and reported; the others go on.
    """
    from inkpack.data.images import load_gray

    files = pagexml_files(source)
    single = not os.path.isdir(source)
    out_dir = None
    if out is not None:
        as_file = single and out.lower().endswith(".xml") and not os.path.isdir(out)
        out_dir = None if as_file else out
        src_dir = os.path.dirname(os.path.abspath(files[0]))
        if os.path.abspath(out) == (os.path.abspath(files[0]) if as_file else src_dir):
            raise InputError(f"{out}: would overwrite the input PAGE-XML; give another output path")
        _check_writable(out, out_dir is not None)
    rep = PageFileReport()
    for f in files:
        try:
            try:
                data = Path(f).read_bytes()
            except OSError as e:
                raise InputError(f"{f}: cannot read ({e.strerror or e})") from None
            _, page = parse_page_data(data, f)
            img = page_image_path(f, page, images_dir)
            gray = load_gray(img, **({"max_pixels": max_pixels} if max_pixels else {}))
            res = recognize_page(gray, data, recognize, name=f, image_name=f"image {img}",
                                 batch_size=batch_size, max_lines=max_lines)
        except InkpackError as e:
            if single:
                raise
            rep.skipped_pages.append(str(e))
            continue
        rep.pages += 1
        rep.lines += len(res.texts)
        rep.skipped_lines += [f"{f}: {e}" for e in res.errors]
        if on_page is not None:
            on_page(f, res)
        if out is not None:
            dest = os.path.join(out_dir, os.path.basename(f)) if out_dir else out
            try:  # whole or not at all: a stopped run leaves no half-written page
                Path(dest + ".part").write_bytes(res.xml)
                os.replace(dest + ".part", dest)
            except OSError as e:
                raise InputError(f"{dest}: cannot write ({e.strerror or e})") from None
            rep.outputs.append(dest)
    return rep


def _check_writable(out: str, is_dir: bool) -> None:
    """Before any recognition: the output folder can be made, or the output file's folder exists."""
    try:
        if is_dir:
            os.makedirs(out, exist_ok=True)
            ok = os.access(out, os.W_OK)
        else:
            parent = os.path.dirname(os.path.abspath(out))
            ok = os.path.isdir(parent) and os.access(parent, os.W_OK) and not os.path.isdir(out)
    except OSError as e:
        raise InputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    if not ok:
        raise InputError(f"{out}: output path is not writable")


# ---- the earlier two-step interface (all crops at once), kept for existing callers -------

def prepare_page(gray: np.ndarray, xml: bytes, name: str = "PAGE-XML") -> PageJob:
    """Parse and crop every line at once (prefer :func:`recognize_page`, which streams)."""
    job = open_page(xml, gray.shape[1], gray.shape[0], name)
    kept_lines = []
    for k, crop in iter_crops(job, gray):
        if crop is not None:
            kept_lines.append(job.lines[k])
            job.crops.append(crop)
    job.lines = kept_lines
    return job


def fill_page(job: PageJob, results) -> bytes:
    for line, res in zip(job.lines, results):
        set_line_text(line, *_text_conf(res))
    return page_bytes(job.tree)
