"""The online-handwriting side of ``evaluate`` and ``recognize`` (``train --task char|line`` is
:mod:`inkpack.cli.train`, calling :func:`inkpack.train.ink_train.fit_ink`).

* ``evaluate_ink(path, model, json_out)``: a CASIA ``.pot`` file is scored by character
  accuracy against each sample's tag code (top-1 and top-5; samples whose label the model
  does not know count as errors); an IAM-OnDB-style ``.npz`` by greedy CER/WER, with the
  keys of the image ``evaluate``. Timing is preprocessing + forward + decoding, batch
  ``batch_size``, ``threads`` threads; the model is a PyTorch model or an ``.onnx`` export.
* Both run through the one recognizer (:func:`inkpack.infer.recognizer.open_recognizer`).
* ``recognize_ink(paths, model)``: ``.pot`` / ``.inkml`` / IAM-OnDB ``.xml`` files, one output
  line per sample: the top-5 candidates of a character model, or the text of a line model.
  ``ink_results(path, ...)`` yields ``(sample, Recognition)`` for the CLI's ``recognize``.

Defaults (``default_model``): ``models/hanzi-lstm-char`` for CASIA ``.pot`` characters,
``models/iamondb-online-blstm`` for ink lines (``.inkml``, IAM-OnDB ``.xml`` strokes, ``.npz``).
Files are read by content (``inkpack.infer.inputs.file_kind``), not only by extension. Unreadable samples
are skipped, reported on stderr and counted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from inkpack.decode.options import chosen
from inkpack.errors import InkpackError, InputError, ModelFileError

DEFAULT_CHAR_MODEL = "hanzi-lstm-char"
DEFAULT_LINE_MODEL = "iamondb-online-blstm"
def default_model(file_kind: str) -> str:
    """The bundled model for an ink file: characters (``pot``) or lines (everything else)."""
    return DEFAULT_CHAR_MODEL if file_kind == "pot" else DEFAULT_LINE_MODEL


def _open(model: str | None, default: str, kind: str, threads: int = 1, decoder=None):
    """The recognizer of ``model`` (PyTorch or ``.onnx``; None: ``default``), which must read ``kind``."""
    from inkpack.infer.recognizer import open_recognizer
    from inkpack.models.io import input_kind

    name = str(model or default)
    got = input_kind(name)
    if got != kind:
        what = "character (.pot)" if kind == "char" else "line (.npz)"
        raise InkpackError(f"{name}: a {got!r} model cannot read {what} data; give --model with a {kind!r} model")
    return open_recognizer(name, threads=threads, decoder=decoder)


def _prepared(rec, inks):
    """The recognizer's input per ink; an ink left with no points is reported and dropped."""
    from inkpack.errors import BadSampleError

    prepared, kept = [], []
    for ink in inks:
        try:
            prepared.append(rec.prepare_input(ink))
        except BadSampleError:
            print(f"skipped: {ink.name()}: no points after preprocessing", file=sys.stderr)
            continue
        kept.append(ink)
    return prepared, kept


def _read_iamondb_xml(path: Path, strict: bool = False):
    from inkpack.data.formats.iamondb import read_iamondb_xmls

    return read_iamondb_xmls([path], strict=strict)


def _read(path: Path, kind: str | None = None):
    """The samples of an ink file, read by content (``kind`` from ``infer.inputs.file_kind``)."""
    from inkpack.data.formats.iamondb import read_iamondb_npz
    from inkpack.data.formats.inkml import read_inkml
    from inkpack.data.formats.pot import read_pot
    from inkpack.infer.inputs import file_kind

    if not path.is_file():
        raise InputError(f"{path}: file not found")
    readers = {"pot": read_pot, "inkml": read_inkml, "npz": read_iamondb_npz, "iamondb": _read_iamondb_xml}
    kind = kind or file_kind(path)
    reader = readers.get(kind)
    if reader is None:
        raise InputError(f"{path}: not an ink file (InkML, IAM-OnDB .xml strokes, CASIA .pot or .npz lines)")
    inks = reader(path, strict=False)
    for e in inks.errors:
        print(f"skipped: {e}", file=sys.stderr)
    return inks


def _write_json(path: str | None, data: dict) -> None:
    if path:
        from inkpack.jsonio import write_json

        write_json(path, data)


def evaluate_ink(path: str, model: str | None = None, json_out: str | None = None,
                 threads: int = 1, batch_size: int = 1, decoder=None, perturb=None, seed: int = 0) -> dict:
    """Score a ``.pot`` (accuracy, top-5) or ``.npz`` (CER, WER) file; print and return the figures.

    ``decoder`` (a :class:`inkpack.decode.beam.Decoder`, line data only) replaces greedy decoding;
    the time it takes is part of ms/line. ``perturb`` (a
    :class:`~inkpack.data.ink_perturb.PerturbConfig`, or its mapping of rates) changes the stroke
    order / direction of every sample first (sample ``i`` with the seed ``(seed, i)``): how much
    the score depends on the reference order; the figures then carry ``perturb``.
    """
    from inkpack.jsonio import check_output_file

    check_output_file(json_out, "--json")
    torch.set_num_threads(threads)
    p = Path(path)
    if p.suffix.lower() not in (".pot", ".npz"):
        raise InkpackError(f"{path}: evaluate reads .pot characters or .npz lines on the ink side")
    is_char = p.suffix.lower() == ".pot"
    if is_char and chosen(decoder) is not None:
        raise InkpackError(f"{path}: --decoder applies to line models (.npz); characters are classified")
    rec = _open(model, DEFAULT_CHAR_MODEL if is_char else DEFAULT_LINE_MODEL, "char" if is_char else "ink",
                threads, decoder)
    inks = _read(p)
    if not inks:
        raise InkpackError(f"{path}: no readable samples ({len(inks.errors)} skipped)")
    if perturb is not None:
        inks = _perturbed(inks, perturb, seed)
    rec.run_batched(_prepared(rec, inks[:2])[0], batch_size)  # warm-up
    t0 = time.perf_counter()
    prepared, kept = _prepared(rec, inks)
    results = rec.run_batched(prepared, batch_size)
    dt = time.perf_counter() - t0
    skipped = len(inks.errors) + len(inks) - len(kept)
    n_all = len(inks) + len(inks.errors)
    res = {"threads": threads, "batch_size": batch_size, "skipped": skipped,
           "decoder": "greedy" if rec.decoder is None else rec.decoder.kind}
    if perturb is not None:
        res["perturb"] = {**vars(inks.perturb), "seed": seed}
    if is_char:
        res.update(_char_scores(results, kept, rec.alphabet, n_all))
        res["ms_per_sample"] = 1000 * dt / max(1, len(kept))
        print(f"accuracy {100 * res['accuracy']:.2f}%  top-5 {100 * res['top5']:.2f}%  "
              f"samples {res['samples']}  {res['ms_per_sample']:.2f} ms/sample")
    else:
        res.update(_line_scores([r.text for r in results], kept))
        res["ms_per_line"] = 1000 * dt / max(1, len(kept))
        print(f"CER {100 * res['cer']:.2f}%  WER {100 * res['wer']:.2f}%  lines {res['lines']}  "
              f"{res['ms_per_line']:.2f} ms/line")
    _write_json(json_out, res)
    return res


def _perturbed(inks, perturb, seed: int):
    """``inks`` with their stroke order / direction perturbed (``InkList``, errors kept)."""
    from inkpack.data.ink import InkList
    from inkpack.data.ink_perturb import PerturbConfig, perturb_order

    cfg = perturb if isinstance(perturb, PerturbConfig) else PerturbConfig.from_dict(perturb, "--perturb")
    out = InkList([perturb_order(ink, np.random.default_rng([seed, i]), cfg) for i, ink in enumerate(inks)],
                  inks.errors)
    out.perturb = cfg
    return out


def _char_scores(results, kept, alphabet, n_all: int) -> dict:
    """Accuracy over all samples of the file: unreadable ones and unknown labels are errors."""
    top1 = top5 = unknown = 0
    for r, ink in zip(results, kept):
        label = ink.label
        if not label or label not in alphabet:
            unknown += 1
            continue
        cands = [c for c, _ in r.candidates[:5]]
        top1 += bool(cands) and cands[0] == label
        top5 += label in cands
    return {"accuracy": top1 / max(1, n_all), "top5": top5 / max(1, n_all), "samples": n_all,
            "unknown_labels": unknown}


def _line_scores(texts: list[str], kept) -> dict:
    from inkpack.metrics import ErrorCounts

    counts = ErrorCounts()
    for text, ink in zip(texts, kept):
        counts.add(text, ink.label or "")
    return {"cer": counts.cer, "wer": counts.wer, "lines": len(kept)}


def ink_recognizer(model: str | None, file_kind: str, threads: int = 1, decoder=None, top_k: int = 5):
    """The recognizer for an ink file: ``model`` (PyTorch or ``.onnx``) or the bundled default."""
    from inkpack.infer.recognizer import open_recognizer
    from inkpack.models.io import input_kind

    name = str(model or default_model(file_kind))
    kind = input_kind(name)
    if kind not in ("char", "ink"):
        raise ModelFileError(f"{name}: a {kind!r} model cannot read ink; give --model with an ink model")
    return open_recognizer(name, threads=threads, decoder=decoder, top_k=top_k,
                           **({} if name.lower().endswith(".onnx") else {"name": name}))


def format_result(rec, r) -> str:
    """``c1 p1  c2 p2 ...`` for a character model, the text for a line model."""
    if getattr(rec, "input_kind", "ink") == "char":
        return "  ".join(f"{t} {p:.3f}" for t, p in r.candidates)
    return r.text


def ink_results(path: str, rec, kind: str | None = None):
    """``(sample name, Recognition or InkpackError)`` for every sample of an ink file; a file
    that cannot be read raises."""
    inks = _read(Path(path), kind)
    for e in inks.errors:
        yield str(e), InputError(str(e))
    for ink in inks:
        try:
            yield ink.name(), rec.recognize(ink)
        except InkpackError as e:
            yield ink.name(), e


def recognize_ink(paths: list[str], model: str | None = None, top_k: int = 5,
                  threads: int = 1, decoder=None) -> int:
    """Print ``id<TAB>c1 p1  c2 p2 ...`` (character model) or ``id<TAB>text`` per sample."""
    from inkpack.infer.inputs import file_kind

    recs: dict[str, object] = {}
    failed = 0
    for path in paths:
        try:
            kind = file_kind(path)
            key = model or default_model(kind)
            if key not in recs:
                recs[key] = ink_recognizer(model, kind, threads, decoder, top_k)
            rec = recs[key]
            for name, r in ink_results(path, rec, kind):
                if isinstance(r, InkpackError):
                    print(f"error: {name}: {r}" if name not in str(r) else f"error: {r}", file=sys.stderr)
                    failed += 1
                else:
                    print(f"{name}\t{format_result(rec, r)}")
        except InkpackError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0
