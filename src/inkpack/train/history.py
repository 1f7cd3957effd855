"""Training logs: the records of every epoch as JSON and CSV, rewritten whole each time."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def write_history(history: list[dict], out_dir: str | Path) -> None:
    """Per-epoch (or per-evaluation) records as history.json and history.csv."""
    out_dir = Path(out_dir)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != "epoch", k))
    with open(out_dir / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
