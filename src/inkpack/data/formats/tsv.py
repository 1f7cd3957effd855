"""TSV manifests: ``image<TAB>text`` with a header row, image paths relative to the TSV.

A UTF-8 byte-order mark (as Excel and Notepad write) is accepted. Exactly two columns: a row
with more tabs is reported as an error rather than read with the tab inside the text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from inkpack.errors import BadSampleError, InkpackError


@dataclass
class LineRecord:
    """One labelled line: where its pixels come from, and its transcription.

    ``path`` is an image file; for PAGE-XML lines ``crop`` holds the already cropped
    grayscale array and ``path`` the page image it came from.
    """

    id: str
    path: str
    text: str
    crop: object | None = None


def read_tsv(path: str, require_text: bool = True) -> tuple[list[LineRecord], list[str]]:
    """Read a manifest; returns (records, errors). Bad rows are reported, not fatal."""
    if not os.path.exists(path):
        raise InkpackError(f"{path}: file not found")
    base = os.path.dirname(os.path.abspath(path))
    records: list[LineRecord] = []
    errors: list[str] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            # only \n and \r\n end a row (str.splitlines would also split at U+2028, U+0085, ...)
            lines = [ln[:-1] if ln.endswith("\r") else ln for ln in f.read().split("\n")]
        while lines and not lines[-1]:
            lines.pop()
    except UnicodeDecodeError as e:
        raise InkpackError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InkpackError(f"{path}: cannot read ({e.strerror or e})") from None
    if not lines:
        raise InkpackError(f"{path}: empty manifest (expected a header 'image<TAB>text')")
    header = lines[0].split("\t")
    if header[0].strip().lower() != "image" or len(header) != 2:
        raise InkpackError(f"{path}:1: expected header 'image<TAB>text', got {lines[0][:60]!r}")
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            errors.append(f"{path}:{n}: missing text column (expected image<TAB>text)")
            continue
        if len(parts) > 2:
            errors.append(f"{path}:{n}: {len(parts)} tab-separated columns, expected 2 (image<TAB>text; "
                          "a tab is not allowed inside the text)")
            continue
        img, text = parts[0].strip(), parts[1]
        if not img:
            errors.append(f"{path}:{n}: empty image path")
            continue
        if require_text and not text.strip():
            errors.append(f"{path}:{n}: empty transcription for {img}")
            continue
        full = img if os.path.isabs(img) else os.path.join(base, img)
        records.append(LineRecord(id=os.path.splitext(os.path.basename(img))[0], path=full, text=text))
    return records, errors


def check_record(rec: LineRecord) -> None:
    if not rec.text.strip():
        raise BadSampleError(f"{rec.path}: empty transcription")
