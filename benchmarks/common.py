"""Shared bits of the benchmarks: argument parsing, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes, for CI and smoke checks")
    p.add_argument("--json", help="write the results here")
    return p


def machine() -> dict:
    import os

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def read_lines(tsv, limit: int | None = None, stride: int = 1) -> tuple[list, list[str]]:
    """Gray line images and transcriptions of a TSV manifest: every ``stride``-th row, at most
    ``limit`` of them (unreadable rows are left out, as ``read_tsv`` reports them)."""
    from inkpack.data.formats.tsv import read_tsv
    from inkpack.data.images import load_gray

    records, _ = read_tsv(str(tsv))
    records = records[::stride][:limit] if limit else records[::stride]
    return [load_gray(r.path) for r in records], [r.text for r in records]


def table(rows: list[tuple], header: tuple) -> str:
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(lines)


def portable(obj):
    """``obj`` with every absolute path under the repository's parent (the repository, shared/)
    rewritten relative to the repository, so results hold no path of the machine they ran on."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(str(REPO.parent) + "/"):
        import os

        return os.path.relpath(obj, REPO)
    return obj


def write_json(path: str | None, data: dict) -> None:
    data = portable(data)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def wait_healthy(url: str, proc, exit_log, timeout: float = 90.0) -> None:
    """Poll ``url``/health until it answers 200; ``exit_log()`` gives the server's output when
    the process ``proc`` ends first."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early: {exit_log()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit("server did not become healthy in time")
