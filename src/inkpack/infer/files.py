"""Files of any kind recognized, each by the model for its kind: :class:`FileRecognizer`, what
``inkpack recognize`` runs (its parser and printing are :mod:`inkpack.cli.run`).

Files are dispatched by content (:func:`file_kind`): line images to the line image model (batched
by width, ``CHUNK`` files at a time), ink lines (InkML, IAM-OnDB ``.xml`` strokes) to the online
line model, CASIA ``.pot`` characters to the character model, PAGE-XML files or folders to the line
image model line by line (the filled PAGE-XML written to ``out``), unless ``model`` says
otherwise (:func:`model_kind`). Results and errors go to a *sink*: ``result(name, recognition,
text, sample=False)``, ``error(name, exc)`` and ``note(msg)`` (a line for stderr). No torch at
import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from inkpack.errors import ConfigError, InkpackError, InputError
from inkpack.infer.evaluate import CHUNK

__all__ = ["FileRecognizer", "file_kind", "model_kind"]


def model_kind(model: str | None) -> str:
    """``image``, ``ink`` or ``char``: what ``model`` reads (``none``: no model given)."""
    if model is None:
        return "none"
    from inkpack.models.io import input_kind

    return input_kind(model)


def file_kind(path: str) -> str:
    """What an input of ``recognize`` is: ``pagexml`` for a folder, else by content."""
    from inkpack.infer.inputs import file_kind as kind_by_content

    if os.path.isdir(path):
        return "pagexml"  # a folder of PAGE-XML files
    return kind_by_content(path) if os.path.isfile(path) else "image"  # a missing file: named by the image reader


class FileRecognizer:
    """``model`` (name, path, ``.onnx`` or None: the bundled model for each kind) run on files;
    the recognizers are opened once, when first needed."""

    def __init__(self, model: str | None = None, *, threads: int = 1, device: str = "cpu", batch_size: int = 1,
                 decoder=None, images_dir: str | None = None) -> None:
        self.model, self.threads, self.device, self.batch_size = model, threads, device, batch_size
        self.decoder, self.images_dir = decoder, images_dir
        self._recs: dict = {}
        self._kind: str | None = None

    @property
    def kind_of_model(self) -> str:
        """:func:`model_kind` of the model (read once, when first asked)."""
        if self._kind is None:
            self._kind = model_kind(self.model)
        return self._kind

    def line_recognizer(self):
        """The line image recognizer (a :class:`~inkpack.infer.recognizer.Recognizer`), opened once."""
        if "image" not in self._recs:
            from inkpack.infer.recognizer import open_recognizer

            name = Path(str(self.model)).stem if self.model else "default"
            self._recs["image"] = open_recognizer(self.model, threads=self.threads, device=self.device,
                                                  decoder=self.decoder, name=name, batch_size=self.batch_size)
        return self._recs["image"]

    def run(self, paths: list[str], sink, out: str | None = None) -> None:
        """Every file of ``paths`` recognized, results to ``sink`` in input order; ``out``: where
        the filled PAGE-XML of PAGE-XML inputs goes (a file for one page, else a folder)."""
        kinds = [file_kind(p) for p in paths]
        if out and "pagexml" not in kinds:
            raise ConfigError("--out: the filled PAGE-XML is written for PAGE-XML inputs; none given")
        self.kind_of_model  # noqa: B018 (a model that cannot be read fails here, before any input)
        pending: list[str] = []
        for path, kind in zip(paths, kinds):
            if kind == "image":
                pending.append(path)
                if len(pending) >= CHUNK:
                    self._images(pending, sink)
                continue
            self._images(pending, sink)
            if kind == "pagexml":
                self.pagexml(path, sink, out)
            elif kind == "xml":
                msg = f"{path}: an XML file that is neither PAGE-XML, InkML nor IAM-OnDB strokes"
                sink.error(path, InputError(msg))
            else:
                self._ink(path, kind, sink)
        self._images(pending, sink)

    def _images(self, paths: list[str], sink) -> None:
        """Recognize the image files in ``paths`` (then empty it), batched by width."""
        if not paths:
            return
        todo, paths[:] = list(paths), []
        if self.kind_of_model not in ("none", "image"):
            for p in todo:
                sink.error(p, ConfigError(f"--model {self.model} is an {self.kind_of_model!r} model; {p} is an image"))
            return
        rec = self.line_recognizer()
        prepared: dict[int, object] = {}
        failed: dict[int, InkpackError] = {}
        for i, p in enumerate(todo):
            try:
                prepared[i] = rec.prepare_input(p)
            except InkpackError as e:  # unreadable, too large, not an image
                failed[i] = e
        results = dict(zip(prepared, rec.run_batched(list(prepared.values()), self.batch_size)))
        for i, name in enumerate(todo):  # in input order
            if i in failed:
                sink.error(name, failed[i])
            else:
                sink.result(name, results[i], results[i].text)

    def _ink(self, path: str, kind: str, sink) -> None:
        from inkpack.ink_commands import default_model, format_result, ink_recognizer, ink_results

        if self.kind_of_model == "image":
            sink.error(path, ConfigError(f"--model {self.model} reads images; {path} is ink (omit --model "
                                         "for the bundled ink models, or give an ink model)"))
            return
        key = self.model or default_model(kind)
        try:
            if key not in self._recs:
                self._recs[key] = ink_recognizer(self.model, kind, self.threads, self.decoder)
            rec = self._recs[key]
            for name, r in ink_results(path, rec, kind):
                if isinstance(r, InkpackError):
                    sink.error(name, r)
                else:
                    sink.result(name, r, format_result(rec, r), sample=True)
        except InkpackError as e:
            sink.error(path, e)

    def pagexml(self, path: str, sink, out: str | None = None) -> None:
        """A PAGE-XML file or folder: every TextLine recognized; with ``out`` the filled XML written."""
        from inkpack.decode.recognition import Recognition
        from inkpack.deploy.page import crops_recognizer, recognize_pagexml

        if self.kind_of_model not in ("none", "image"):
            sink.error(path, ConfigError(f"--model {self.model} is an {self.kind_of_model!r} model; "
                                         f"{path} is a PAGE-XML page"))
            return

        def on_page(f: str, res) -> None:
            for lid, r in zip(res.line_ids, res.results):
                r = r if isinstance(r, Recognition) else Recognition(str(getattr(r, "text", r)))
                sink.result(f"{f}:{lid}", r, r.text, sample=True)
            for e in res.errors:
                sink.note(f"skipped: {f}: {e}")

        if out and not os.path.isdir(path) and out.lower().endswith(".xml") and not os.path.isdir(out):
            from inkpack.jsonio import check_output_file

            check_output_file(out, "--out")  # one page into one file: its folder is made now
        try:
            rep = recognize_pagexml(path, crops_recognizer(self.line_recognizer()), out, images_dir=self.images_dir,
                                    batch_size=self.batch_size, on_page=on_page)
        except InkpackError as e:
            sink.error(path, e)
            return
        for msg in rep.skipped_pages:  # one bad page of a folder is skipped and counted, never fatal
            sink.note(f"skipped: {msg}")
        if rep.outputs:
            sink.note(f"wrote {len(rep.outputs)} PAGE-XML file(s): {rep.pages} pages, {rep.lines} lines "
                      f"({len(rep.skipped_pages)} pages skipped)")
