"""Memory bounded by work: each bad input runs in a subprocess under a data-segment cap
(``RLIMIT_DATA``) and must end with a one-line error (or be skipped and counted) while its
peak RSS stays within a few hundred MB of the same process on a normal input.

Before the limits, the 20,000 x 1 PNG took 4.2 GB (and the 1,000,000 x 1 one asked for
9.2 GB) once scaled to the model's height, and 99,999 ink points needed a (99742, 1024, 2)
array; under the cap those die with MemoryError tracebacks.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import render_text

resource = pytest.importorskip("resource")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA semantics of Linux")

ROOT = Path(__file__).resolve().parents[1]
CAP_MB = 1024  # data-segment cap; torch with a line model needs about 250 MB of it
MARGIN_MB = 300  # allowed peak RSS above the same command on a normal line


def run_capped(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str, str, float]:
    """``(exit code, stdout, stderr, peak RSS in MB)`` of ``python args`` under the cap."""
    cap = CAP_MB << 20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT / "src")}
    with open(cwd / "out.txt", "w+") as out, open(cwd / "err.txt", "w+") as err:
        p = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, cwd=cwd, env=env, preexec_fn=limit)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)  # the child's own rusage: its peak RSS
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), usage.ru_maxrss / 1024


def _ztxt_bomb(inflated: int) -> bytes:
    """A small PNG whose zTXt chunk (before the pixels) inflates to ``inflated`` bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * inflated, zip=True)
    buf = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    start = data.index(b"zTXt") - 4
    end = start + 12 + int.from_bytes(data[start:start + 4], "big")
    idat = data.index(b"IDAT") - 4
    if start > idat:  # move the chunk before IDAT, where Pillow reads it at open
        data = data[:idat] + data[start:end] + data[idat:start] + data[end:]
    return data


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_inputs")
    render_text("the cat sat").save(d / "good.png")
    Image.new("L", (20_000, 1), 255).save(d / "thin.png")  # 113 bytes
    Image.new("L", (1_000_000, 1), 255).save(d / "thinner.png")
    (d / "bomb.png").write_bytes(_ztxt_bomb(200 << 20))  # 200 MiB of text, ~200 KB on disk
    (d / "data.tsv").write_text("image\ttext\nthin.png\tx\ngood.png\tthe cat sat\nthinner.png\ty\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def baseline_mb(inputs) -> float:
    rc, out, err, peak = run_capped(["-m", "inkpack", "recognize", "good.png"], inputs)
    assert rc == 0, err
    return peak


@pytest.mark.parametrize("name", ["thin.png", "thinner.png", "bomb.png"])
def test_recognize_refuses_with_one_line_in_bounded_memory(inputs, baseline_mb, name):
    rc, out, err, peak = run_capped(["-m", "inkpack", "recognize", name], inputs)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and name in lines[0], err
    assert ("too wide" if name != "bomb.png" else "too large") in lines[0].lower()
    assert peak < baseline_mb + MARGIN_MB, (peak, baseline_mb)


LOADSET = """
import resource, sys
import torch
from inkpack.data.lines import load_lineset
s = load_lineset('data.tsv', 48, progress=False)
print(len(s), len(s.skipped))
print('\\n'.join(s.skipped))
"""


def test_a_too_wide_row_is_skipped_in_bounded_memory(inputs, baseline_mb):
    rc, out, err, peak = run_capped(["-c", LOADSET], inputs)
    assert rc == 0, err
    head, *reasons = out.strip().splitlines()
    assert head == "1 2" and "thin.png" in reasons[0] and "thinner.png" in reasons[1]
    assert peak < baseline_mb + MARGIN_MB, (peak, baseline_mb)


INK = """
import sys
import numpy as np
from inkpack.data.ink import Ink
from inkpack.data.ink_preprocess import PreprocessConfig, preprocess
from inkpack.errors import InputTooLargeError
n = int(sys.argv[1])
ink = Ink.from_xy([np.zeros((n, 2))], id='spot')  # every point on one spot: the worst case
try:
    print(preprocess(ink, PreprocessConfig()).shape[0])
except InputTooLargeError as e:
    print(e)
"""


def test_ink_preprocessing_is_linear_in_memory_and_limited(inputs):
    rc, out, err, peak0 = run_capped(["-c", INK, "100"], inputs)
    assert rc == 0 and out.strip() == "2", err
    rc, out, err, peak = run_capped(["-c", INK, "99999"], inputs)
    assert rc == 0 and out.strip() == "2", err  # first and last point kept
    assert peak < peak0 + 150, (peak, peak0)  # was (99742, 1024, 2) float64: 1.6 GB
    rc, out, err, _ = run_capped(["-c", INK, "100001"], inputs)
    assert rc == 0 and out.strip().startswith("spot: ink too large: 100001 points"), err
