"""Training logs: the records of every epoch as JSON and CSV, rewritten whole each time.

``history.json`` is strict JSON (``inkpack.jsonio``): a NaN or infinite loss is written as
``null``, never as the ``NaN`` token other JSON readers refuse; both files are replaced atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from inkpack.jsonio import write_json, write_text


def write_history(history: list[dict], out_dir: str | Path) -> None:
    """Per-epoch (or per-evaluation) records as history.json and history.csv."""
    out_dir = Path(out_dir)
    write_json(out_dir / "history.json", history, indent=1, flag="history")  # NaN -> null
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)  # a NaN loss stays 'nan' here, as CSV readers expect
    write_text(out_dir / "history.csv", buf.getvalue(), flag="history")
