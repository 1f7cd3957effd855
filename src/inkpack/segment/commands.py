"""What ``inkpack segment`` and ``inkpack recognize --page`` call (:func:`run_pages`; their parsers are
:mod:`inkpack.cli.pages`): page images or folders segmented, optionally read, and written as
PAGE-XML, ALTO, JSON or text; :func:`run_page` and :func:`render` are also the service's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from inkpack.errors import InkpackError, InputError

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
SUFFIX = {"page": ".xml", "alto": ".alto.xml", "json": ".json", "text": ".txt"}


def collect(inputs: list[str]) -> list[Path]:
    out = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXT)
            if not found:
                raise InputError(f"{p}: no page images in folder")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: file not found")
    return out


def render(result, fmt: str) -> bytes:
    from inkpack.segment.output import page_to_alto, page_to_pagexml

    from inkpack.segment.output import line_words

    texts = result.texts if result.texts else None
    confs = result.confidences if result.texts else None
    glyphs = result.glyphs if result.texts and result.glyphs else None
    size, name = (result.width, result.height), os.path.basename(result.image) or "page.jpg"
    k = getattr(result, "turns", 0)
    if fmt == "page":
        return page_to_pagexml(result.lines, size, texts, confs, name, glyphs, k)
    if fmt == "alto":
        return page_to_alto(result.lines, size, texts, confs, name, glyphs, k)
    if fmt == "text":
        return (result.text + "\n").encode("utf-8") if texts else b""
    from inkpack.segment.orient import back

    lines = [{"order": ln.order, "region": ln.region, "baseline": back(ln.baseline, k, size).round(1).tolist(),
              "polygon": back(ln.polygon, k, size).round(1).tolist(), "score": round(ln.score, 4),
              **({"text": texts[i], "confidence": round(confs[i], 4)} if texts else {}),
              **({"words": [{"text": w, "confidence": round(c, 4), "x": [round(x0, 1), round(x1, 1)]}
                            for w, c, x0, x1, _ in line_words(glyphs[i])]} if glyphs and glyphs[i] else {})}
             for i, ln in enumerate(result.lines)]
    doc = {"image": result.image, "width": result.width, "height": result.height, "lines": lines}
    if k:  # words' "x" ranges are along the line in the upright page (turned clockwise by "orientation")
        doc["orientation"] = result.orientation
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def run_page(image, seg, rec, name: str | None = None, max_lines: int | None = None, check_180: bool = False):
    """A page (path, bytes or array) segmented by ``seg`` (turned upright first when scanned
    sideways, or with ``check_180`` upside down) and, with ``rec`` (``.recognize(crops)``),
    read: a :class:`PageResult`. More than ``max_lines`` lines is ``InputTooLargeError``."""
    from inkpack.errors import InputTooLargeError
    from inkpack.segment.page import PageResult, read_lines, to_gray

    gray = to_gray(image)
    if hasattr(seg, "segment_upright"):
        k, up, lines = seg.segment_upright(gray, check_180)
    else:  # another segmenter (e.g. the classical one): the page as it is
        k, up, lines = 0, gray, seg.segment(gray)
    if max_lines is not None and len(lines) > max_lines:
        raise InputTooLargeError(f"page: {len(lines)} text lines found, more than the limit of {max_lines}")
    warnings: list[str] = []
    texts, confs, glyphs = [], [], []
    if rec is not None:
        texts, confs, glyphs = read_lines(up, [ln.polygon for ln in lines], rec, warnings)
    return PageResult(gray.shape[1], gray.shape[0], lines, texts, confs,
                      name if name is not None else str(image) if isinstance(image, (str, os.PathLike)) else "",
                      glyphs=glyphs, warnings=warnings, turns=k)


def run_pages(inputs: list[str], out: str | None, fmt: str, seg_model=None, line_model=None, threads: int = 1,
              check_180: bool = False) -> int:
    """``inkpack segment`` and ``inkpack recognize --page``: page images or folders -> ``fmt``;
    ``line_model``: None (segment only) or a function returning the line recognizer (called
    once the inputs and ``out`` are checked)."""
    import torch

    from inkpack.segment.page import Segmenter

    torch.set_num_threads(max(1, threads))
    pages = collect(inputs)
    out_dir = check_out(inputs, pages, out, fmt)
    seg = Segmenter(seg_model)
    return write_pages(pages, out_dir, out, fmt, seg, line_model() if line_model is not None else None, check_180)


def check_out(inputs: list[str], pages: list[Path], out: str | None, fmt: str) -> Path | None:
    """The output folder for several pages (made now), None for one page (``out``: a file or stdout)."""
    if not (len(pages) > 1 or any(Path(s).is_dir() for s in inputs)):
        if out:
            from inkpack.jsonio import check_output_file

            check_output_file(out, "--out")  # writable before the page is read
        return None
    if not out:
        raise InputError("--out: a folder is needed for several pages")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: not a folder")
    if any(out_dir.resolve() == p.parent.resolve() for p in pages) and fmt == "page":
        raise InputError(f"--out {out_dir}: is a page folder (its PAGE-XML would be overwritten); use another")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _read(p, seg, rec, fmt: str, check_180: bool) -> bytes:
    result = run_page(p, seg, rec, check_180=check_180)
    for w in result.warnings:
        print(f"warning: {p}: {w}", file=sys.stderr)
    if result.turns:
        print(f"note: {p}: text is not upright; read after turning the page {90 * result.turns} degrees "
              f"anticlockwise (PAGE orientation {result.orientation:g})", file=sys.stderr)
    return render(result, fmt)


def write_pages(pages: list[Path], out_dir: Path | None, out: str | None, fmt: str, seg, rec,
                check_180: bool = False) -> int:
    """Segment (and with ``rec`` recognize) each page and write it as ``fmt``: one page into ``out``
    (or standard output); several into ``out_dir`` with a progress bar, a failing page reported
    in one line and skipped (exit 2 at the end)."""
    if out_dir is None:
        data = _read(pages[0], seg, rec, fmt, check_180)
        if out:
            Path(out).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return 0
    failed = 0
    for p in tqdm(pages, desc="pages", disable=not sys.stderr.isatty()):
        try:
            data = _read(p, seg, rec, fmt, check_180)
        except InkpackError as e:
            print(f"error: {e if str(p) in str(e) else f'{p}: {e}'} (page skipped)", file=sys.stderr)
            failed += 1
            continue
        (out_dir / (p.stem + SUFFIX[fmt])).write_bytes(data)
    print(f"{len(pages) - failed} page(s) written to {out_dir}" + (f", {failed} failed" if failed else ""),
          file=sys.stderr)
    return 2 if failed else 0
