"""What the commands that run a recognizer share: the decoder and the file recognizer of their
options, and the output of ``recognize`` (text as it comes, or one JSON document). No torch at
import time."""

from __future__ import annotations

import sys

from inkpack.decode.options import decoder_from_args as decoder  # noqa: F401 (the commands' decoder)


def file_recognizer(a, decoder):
    """The :class:`~inkpack.infer.files.FileRecognizer` of a command's ``--model`` and runtime options."""
    from inkpack.infer.files import FileRecognizer

    return FileRecognizer(a.model, threads=a.threads, device=a.device, batch_size=a.batch_size, decoder=decoder,
                          images_dir=getattr(a, "images_dir", None))


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

    def note(self, msg: str) -> None:
        print(msg, file=sys.stderr)

    def close(self) -> None:
        if self.as_json:
            from inkpack.jsonio import dumps

            print(dumps(self.items, indent=2))
        sys.stdout.flush()
