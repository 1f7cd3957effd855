"""The IAM database layout: ``ascii/lines.txt`` plus the ``lines/a01/a01-000u/…png`` tree.

A lines.txt row is ``id ok graylevel ncomp x y w h tok|tok|…``; ``|`` separates words.
Images are looked up at ``<root>/lines/<a01>/<a01-000u>/<id>.png`` where ``<root>`` is the
folder above ``ascii/`` (or the folder of lines.txt itself).
"""

from __future__ import annotations

import os

from inkpack.data.formats.tsv import LineRecord
from inkpack.errors import InkpackError


def _lines_root(lines_txt: str) -> str:
    d = os.path.dirname(os.path.abspath(lines_txt))
    for root in (os.path.dirname(d), d):
        if os.path.isdir(os.path.join(root, "lines")):
            return os.path.join(root, "lines")
    return os.path.join(os.path.dirname(d), "lines")


def iam_image_path(lines_root: str, line_id: str) -> str:
    parts = line_id.split("-")
    if len(parts) < 3:
        raise ValueError(line_id)
    form = "-".join(parts[:2])
    return os.path.join(lines_root, parts[0], form, line_id + ".png")


def read_iam_lines(lines_txt: str, only_ok: bool = False) -> tuple[list[LineRecord], list[str]]:
    if not os.path.exists(lines_txt):
        raise InkpackError(f"{lines_txt}: file not found")
    root = _lines_root(lines_txt)
    records, errors = [], []
    with open(lines_txt, encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split(" ", 8)
            if len(parts) < 9:
                errors.append(f"{lines_txt}:{n}: expected 9 fields (id ok gray ncomp x y w h text), got {len(parts)}")
                continue
            lid, status, text = parts[0], parts[1], parts[8].replace("|", " ")
            if only_ok and status != "ok":
                continue
            try:
                path = iam_image_path(root, lid)
            except ValueError:
                errors.append(f"{lines_txt}:{n}: malformed line id {lid!r}")
                continue
            if not text.strip():
                errors.append(f"{lines_txt}:{n}: empty transcription for {lid}")
                continue
            records.append(LineRecord(id=lid, path=path, text=text))
    return records, errors
