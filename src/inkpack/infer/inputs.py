"""What an input is, by content: an image, InkML, IAM-OnDB strokes, PAGE-XML, ``.npz`` lines.

Files are read by their first bytes (``sniff_kind``), the extension deciding only where the
content does not (``.pot`` has no magic number). The command line dispatches files by
:func:`file_kind`; the recognizers refuse the other kind of input by :func:`is_ink_input`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["file_kind", "is_ink_input", "sniff_kind"]

_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP",
                b"\xff\x4f\xff\x51", b"P5", b"P2", b"P6", b"P3")
_EXT_KINDS = {".inkml": "inkml", ".pot": "pot", ".npz": "npz", ".xml": "xml"}


def sniff_kind(head: bytes) -> str | None:
    """What the first bytes of a file are: ``image``, ``inkml``, ``iamondb`` (IAM-OnDB stroke
    XML), ``pagexml``, ``npz``, or None when the content does not say."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        for tag, kind in ((b"<WhiteboardCaptureSession", "iamondb"), (b"<PcGts", "pagexml"),
                          (b"<ink", "inkml")):
            if tag in head:
                return kind
        low = head.lower()
        if b"<ink" in low or b"inkml" in low:
            return "inkml"
        return "xml"
    return None


def file_kind(path: str | os.PathLike) -> str:
    """``sniff_kind`` of a file's first 4 KiB, else its extension (``.pot`` has no magic number);
    ``image`` for anything else (the image reader names the file if it is not one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    kind = sniff_kind(head)
    if kind is not None and kind != "xml":
        return kind
    return _EXT_KINDS.get(Path(path).suffix.lower(), "image" if kind is None else "xml")


def is_ink_input(x) -> bool:
    from inkpack.data.ink import Ink

    if isinstance(x, (Ink, dict)):
        return True
    if isinstance(x, (str, os.PathLike)):
        return str(x).lower().endswith(".inkml") or (os.path.isfile(x) and file_kind(x) == "inkml")
    if isinstance(x, (bytes, bytearray)):
        head = bytes(x[:512]).lstrip()
        return head.startswith(b"<") and b"<ink" in bytes(x[:4096])
    return False
