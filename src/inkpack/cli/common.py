"""What the commands that run a recognizer share: which kind of model ``--model`` is, which kind
of file an input is, the one image recognizer of a command, and the output of ``recognize``
(text as it comes, or one JSON document). No torch at import time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from inkpack.decode.options import decoder_from_args as decoder  # noqa: F401 (the commands' decoder)

CHUNK = 128  # lines decoded and prepared at a time: memory stays bounded on large sets


def model_kind(model: str | None) -> str:
    """``image``, ``ink`` or ``char``: what ``--model`` reads (None: no model given)."""
    if model is None:
        return "none"
    from inkpack.models.io import input_kind

    return input_kind(model)


class Out:
    """Prints results as they come (text) or collects them for one JSON document (``--json``)."""

    def __init__(self, as_json: bool, multi: bool) -> None:
        self.as_json, self.multi, self.items, self.failed = as_json, multi, [], 0

    def result(self, name: str, r, text: str, sample: bool = False) -> None:
        for msg in getattr(r, "warnings", None) or ():
            print(f"warning: {name}: {msg}", file=sys.stderr)
        if self.as_json:
            self.items.append({"input": name, **r.to_dict()})
        else:
            print(f"{name}\t{text}" if (self.multi or sample) else text, flush=False)

    def error(self, name: str, e: Exception) -> None:
        self.failed += 1
        msg = str(e) if name in str(e) else f"{name}: {e}"
        print(f"error: {msg}", file=sys.stderr)
        if self.as_json:
            self.items.append({"input": name, "error": msg})

    def close(self) -> None:
        if self.as_json:
            from inkpack.jsonio import dumps

            print(dumps(self.items, indent=2))
        sys.stdout.flush()


def file_kind(path: str) -> str:
    """What an input of ``recognize`` is: ``pagexml`` for a folder, else by content."""
    from inkpack.infer.inputs import file_kind as kind_by_content

    if os.path.isdir(path):
        return "pagexml"  # a folder of PAGE-XML files
    return kind_by_content(path) if os.path.isfile(path) else "image"  # a missing file: named by the image reader


def image_rec(a, decoder, state: dict):
    if "image" not in state:
        from inkpack.infer.recognizer import open_recognizer

        name = Path(str(a.model)).stem if a.model else "default"
        state["image"] = open_recognizer(a.model, threads=a.threads, device=a.device, decoder=decoder, name=name,
                                         batch_size=a.batch_size)
    return state["image"]


