"""``inkpack segment PAGE.jpg|DIR ... [--out F|DIR] [--format page|alto|json|text] [--recognize]``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from inkpack.errors import InkpackError, InputError

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
SUFFIX = {"page": ".xml", "alto": ".alto.xml", "json": ".json", "text": ".txt"}


def add_parsers(sub) -> None:
    s = sub.add_parser("segment", help="find the text lines of page images (PAGE-XML, ALTO, JSON), optionally read them")
    s.add_argument("pages", nargs="+", help="page image(s) or folder(s) of page images")
    s.add_argument("--out", help="output file (one page; default: standard output) or folder (several pages)")
    s.add_argument("--format", choices=sorted(SUFFIX), default="page", help="PAGE-XML 2019 (default), ALTO 4, JSON, text")
    s.add_argument("--seg-model", help="segmentation model (default: the bundled models/hooker-segment)")
    s.add_argument("--recognize", action="store_true", help="also recognize each line (text and confidences)")
    s.add_argument("--line-model", help="line model for --recognize (default: the bundled offline model)")
    s.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    s.set_defaults(fn=cmd_segment)


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

    texts = result.texts if result.texts else None
    confs = result.confidences if result.texts else None
    size, name = (result.width, result.height), os.path.basename(result.image) or "page.jpg"
    if fmt == "page":
        return page_to_pagexml(result.lines, size, texts, confs, name)
    if fmt == "alto":
        return page_to_alto(result.lines, size, texts, confs, name)
    if fmt == "text":
        return (result.text + "\n").encode("utf-8") if texts else b""
    lines = [{"order": ln.order, "region": ln.region, "baseline": ln.baseline.round(1).tolist(),
              "polygon": ln.polygon.round(1).tolist(), "score": round(ln.score, 4),
              **({"text": texts[i], "confidence": round(confs[i], 4)} if texts else {})}
             for i, ln in enumerate(result.lines)]
    doc = {"image": result.image, "width": result.width, "height": result.height, "lines": lines}
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def run_page(path: Path, seg, rec):
    from inkpack.segment.page import PageResult, recognize_lines, to_gray

    gray = to_gray(str(path))
    lines = seg.segment(gray)
    texts, confs = recognize_lines(gray, [ln.polygon for ln in lines], rec) if rec is not None else ([], [])
    return PageResult(gray.shape[1], gray.shape[0], lines, texts, confs, str(path))


def cmd_segment(a) -> int:
    import torch

    from inkpack.segment.page import Segmenter

    torch.set_num_threads(max(1, a.threads))
    if a.format == "text" and not a.recognize:
        raise InputError("--format text needs --recognize")
    pages = collect(a.pages)
    many = len(pages) > 1 or any(Path(s).is_dir() for s in a.pages)
    if many:
        if not a.out:
            raise InputError("--out: a folder is needed for several pages")
        out_dir = Path(a.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out {out_dir}: not a folder")
        if any(out_dir.resolve() == p.parent.resolve() for p in pages) and a.format == "page":
            raise InputError(f"--out {out_dir}: is a page folder (its PAGE-XML would be overwritten); use another")
        out_dir.mkdir(parents=True, exist_ok=True)
    seg = Segmenter(a.seg_model)
    rec = None
    if a.recognize:
        from inkpack.api import load

        rec = load(a.line_model, threads=max(1, a.threads))
    if not many:
        data = render(run_page(pages[0], seg, rec), a.format)
        if a.out:
            Path(a.out).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    failed = 0
    for p in tqdm(pages, desc="pages", disable=not sys.stderr.isatty()):
        try:
            data = render(run_page(p, seg, rec), a.format)
        except InkpackError as e:
            print(f"error: {e} (page skipped)", file=sys.stderr)
            failed += 1
            continue
        (out_dir / (p.stem + SUFFIX[a.format])).write_bytes(data)
    print(f"{len(pages) - failed} page(s) written to {out_dir}" + (f", {failed} failed" if failed else ""),
          file=sys.stderr)
    return 2 if failed else 0
