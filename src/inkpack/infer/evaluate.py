"""CER/WER and speed of a line image model on labelled lines: :func:`evaluate_lines`, what
``inkpack evaluate`` runs on line data (a TSV manifest, PAGE-XML, IAM ``lines.txt``) and what a
benchmark can call. No torch at import time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from inkpack.errors import BadSampleError, InputError

__all__ = ["CHUNK", "evaluate_lines", "progress_bar"]

CHUNK = 128  # lines decoded and prepared at a time: memory stays bounded on large sets


def progress_bar(mode: str, total: int, desc: str):
    """A tqdm bar on stderr; ``mode``: ``on``, ``off`` or ``auto`` (only when stderr is a terminal)."""
    from tqdm import tqdm

    disable = {"on": False, "off": True}.get(mode)
    return tqdm(total=total, desc=desc, unit="line", disable=disable, file=sys.stderr, dynamic_ncols=True)


def _field(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def evaluate_lines(data: str, model: str | None = None, *, images_dir: str | None = None, batch_size: int = 1,
                   threads: int = 1, device: str = "cpu", decoder=None, progress: str = "auto",
                   output: str | None = None, output_flag: str = "--output") -> dict:
    """CER/WER of the line images of ``data`` read by ``model`` (a name, path or ``.onnx``; None:
    the bundled model) with ``decoder`` (None: the model's own, ``"greedy"``), ``CHUNK`` lines prepared and decoded at a
    time. Unreadable lines are skipped, counted and reported on stderr; model time (after a
    warm-up batch) is what lines/s and ms/line count. ``output``: a per-line TSV (image,
    reference, hypothesis, cer) written there. No readable line is ``InputError``."""
    from inkpack.data.images import load_gray
    from inkpack.data.lines import read_records
    from inkpack.infer.recognizer import open_recognizer
    from inkpack.metrics import ErrorCounts

    rec = open_recognizer(model, threads=threads, device=device, decoder=decoder)
    records, errors = read_records(data, images_dir=images_dir)
    skipped = list(errors)
    for msg in errors:
        print(f"skipped: {msg}", file=sys.stderr)
    counts, rows, n, model_s, warm = ErrorCounts(), [], 0, 0.0, False
    with progress_bar(progress, len(records), f"evaluating {Path(data).name}") as bar:
        for s in range(0, len(records), CHUNK):
            ims, kept = [], []
            for r in records[s : s + CHUNK]:
                try:
                    # the height: a line too wide once scaled is refused from the file's header
                    ims.append(rec.prepare(r.crop if r.crop is not None else load_gray(r.path, height=rec.height)))
                    kept.append(r)
                except (BadSampleError, InputError) as e:  # skipped and counted, as in training
                    msg = str(e) if r.crop is None or r.id in str(e) else f"{r.id}: {e}"
                    skipped.append(msg)
                    bar.write(f"skipped: {msg}", file=sys.stderr)
            if ims and not warm:
                rec.recognize_prepared(ims[:4], batch_size)
                warm = True
            t0 = time.perf_counter()
            hyps = rec.recognize_prepared(ims, batch_size) if ims else []
            model_s += time.perf_counter() - t0
            for r, h in zip(kept, hyps):
                one = ErrorCounts()
                one.add(h, r.text)
                counts.add(h, r.text)
                rows.append((r.id if r.crop is not None else r.path, r.text, h, one.cer))
            n += len(kept)
            bar.update(min(CHUNK, len(records) - s))
    if n == 0:
        raise InputError(f"{data}: no readable lines ({len(skipped)} skipped)")
    if output:
        from inkpack.jsonio import write_text

        body = "".join(f"{_field(i)}\t{_field(r)}\t{_field(h)}\t{c:.4f}\n" for i, r, h, c in rows)
        write_text(output, "image\treference\thypothesis\tcer\n" + body, output_flag)
    model_s = max(model_s, 1e-9)
    return {"cer": counts.cer, "wer": counts.wer, "lines": n, "skipped": len(skipped),
            "lines_per_s": n / model_s, "ms_per_line": 1000 * model_s / n, "threads": threads,
            "batch_size": batch_size, "decoder": rec.decoder.kind if rec.decoder is not None else "greedy",
            "backend": rec.backend}
