"""Online Chinese characters beside a peer (issue 25): our character models and Zinnia on sets
that measure generalization, not only the synthetic validation.

Sets (one sample per character of GB2312 level 1; ``--quick``: every 10th character), each
written to a CASIA ``.pot`` file and scored with ``inkpack evaluate``'s own code (top-1, top-5,
ms per character = preprocessing + forward, batch 1, one thread):

* ``synthetic``: the fixed-seed synthetic validation set (what the shipped metrics quote);
* ``writer``: held-out writer styles (slant, rotation, proportions, speed, joining and warp
  drawn only from the outer bands of their ranges, which no ``train`` writer has);
* ``order``: the synthetic samples with stroke-order / direction habits at the rates of
  ``PerturbConfig()`` (5% of neighbouring pairs swapped, 3% of strokes reversed, 10% of pen
  lifts joined);
* ``permuted``: the synthetic samples in a uniformly random stroke order (worst case);
* ``reference``: the undistorted medians (the source of the training data: a sanity check,
  and the input closest to what a stroke-database test such as the issue's shows).

The peer: Zinnia (the SVM recognizer of input methods) with Tegaki's simplified Chinese model,
through ``libzinnia.so.0`` (Debian ``libzinnia0`` + ``tegaki-zinnia-simplified-chinese``);
without them its columns are skipped with a message. Each sample is scaled into Zinnia's
1000 x 1000 canvas (bounding box, aspect kept, 15% margin). Zinnia's time is its classify
call plus the ctypes calls that pass the points, one thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SHARED, machine, parser, table, write_json

from inkpack.data.formats.pot import read_pot, write_pot
from inkpack.data.hanzi_synth import HanziSynthDataset, SynthConfig, load_charset, load_medians
from inkpack.data.ink import Ink
from inkpack.data.ink_perturb import PerturbConfig
from inkpack.ink_commands import evaluate_ink

ZINNIA_MODEL = Path("/usr/share/tegaki/models/zinnia/handwriting-zh_CN.model")
SETS = ("synthetic", "writer", "order", "permuted", "reference")


def make_sets(chars: str, med: dict) -> dict[str, list[Ink]]:
    out = {}
    specs = {"synthetic": ({}, None), "writer": ({"writer_style": True, "style_split": "heldout"}, None),
             "order": ({}, PerturbConfig()), "permuted": ({}, PerturbConfig(swap=0, reverse=0, join=0, permute=True))}
    for name, (synth, perturb) in specs.items():
        ds = HanziSynthDataset.validation(med, chars, 1, synth_cfg=SynthConfig(**synth), perturb=perturb)
        out[name] = [ds.ink(i)[0] for i in range(len(ds))]
    out["reference"] = [Ink.from_xy(med[c], label=c) for c in chars]
    for inks in out.values():  # away from .pot's end markers (-1, 0) / (-1, -1)
        for k, ink in enumerate(inks):
            for s in ink.strokes:
                s[:, :2] += 200.0
            ink.id = f"{k}"
    return out


class Zinnia:
    """The C API of libzinnia through ctypes."""

    def __init__(self, model: Path) -> None:
        name = ctypes.util.find_library("zinnia") or "libzinnia.so.0"
        lib = ctypes.CDLL(name)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        for fn, res, args in [("zinnia_recognizer_new", vp, []), ("zinnia_recognizer_open", ctypes.c_int, [vp, ctypes.c_char_p]),
                              ("zinnia_character_new", vp, []), ("zinnia_character_clear", None, [vp]),
                              ("zinnia_character_set_width", None, [vp, sz]), ("zinnia_character_set_height", None, [vp, sz]),
                              ("zinnia_character_add", ctypes.c_int, [vp, sz, ctypes.c_int, ctypes.c_int]),
                              ("zinnia_recognizer_classify", vp, [vp, vp, sz]),
                              ("zinnia_result_value", ctypes.c_char_p, [vp, sz]), ("zinnia_result_size", sz, [vp]),
                              ("zinnia_result_destroy", None, [vp])]:
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        self.lib = lib
        self.rec = lib.zinnia_recognizer_new()
        if not lib.zinnia_recognizer_open(self.rec, str(model).encode()):
            raise RuntimeError(f"{model}: zinnia cannot open the model")
        self.char = lib.zinnia_character_new()

    def classify(self, ink: Ink, nbest: int = 5, size: int = 1000, margin: float = 0.15) -> list[str]:
        lib, c = self.lib, self.char
        xy = ink.xy()
        lo, hi = xy.min(0), xy.max(0)
        s = size * (1 - 2 * margin) / max(1e-9, float(max(hi - lo)))
        off = size / 2 - s * (lo + hi) / 2
        lib.zinnia_character_clear(c)
        lib.zinnia_character_set_width(c, size)
        lib.zinnia_character_set_height(c, size)
        for k, st in enumerate(ink.strokes):
            for x, y in np.rint(st[:, :2] * s + off).astype(int).tolist():
                lib.zinnia_character_add(c, k, x, y)
        res = lib.zinnia_recognizer_classify(self.rec, c, nbest)
        if not res:
            return []
        out = [lib.zinnia_result_value(res, j).decode("utf-8") for j in range(lib.zinnia_result_size(res))]
        lib.zinnia_result_destroy(res)
        return out


def zinnia_or_reason() -> tuple[Zinnia | None, str]:
    if not (ctypes.util.find_library("zinnia") or Path("/usr/lib/x86_64-linux-gnu/libzinnia.so.0").exists()):
        return None, "libzinnia not found (Debian: apt-get install libzinnia0 tegaki-zinnia-simplified-chinese)"
    if not ZINNIA_MODEL.exists():
        return None, f"{ZINNIA_MODEL} not found (Debian: apt-get install tegaki-zinnia-simplified-chinese)"
    try:
        return Zinnia(ZINNIA_MODEL), ""
    except (OSError, RuntimeError) as e:
        return None, f"zinnia unusable: {e}"


def score_zinnia(z: Zinnia, inks: list[Ink]) -> dict:
    top1 = top5 = 0
    t0 = time.perf_counter()
    for ink in inks:
        cands = z.classify(ink)
        top1 += bool(cands) and cands[0] == ink.label
        top5 += ink.label in cands
    dt = time.perf_counter() - t0
    n = max(1, len(inks))
    return {"accuracy": top1 / n, "top5": top5 / n, "samples": len(inks), "ms_per_sample": 1000 * dt / n}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="character model(s) (default: models/hanzi-lstm-char)")
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    a = p.parse_args()
    models = a.model or ["hanzi-lstm-char"]
    med = load_medians(SHARED / "data" / "hanzi" / "medians.json.gz")
    chars = load_charset(SHARED / "data" / "hanzi" / "gb2312_level1.txt")
    chars = chars[::10] if a.quick else chars
    wanted = [s for s in a.sets.split(",") if s]
    bad = [s for s in wanted if s not in SETS]
    if bad:
        p.error(f"--sets: unknown {bad}")
    sets = {k: v for k, v in make_sets(chars, med).items() if k in wanted}
    z, why = zinnia_or_reason()
    if z is None:
        print(f"zinnia skipped: {why}")
    results: dict = {"machine": machine(), "characters": len(chars), "quick": a.quick, "models": models,
                     "zinnia": "tegaki-zinnia-simplified-chinese 0.3 via libzinnia0" if z else f"skipped: {why}",
                     "order_rates": vars(PerturbConfig()), "sets": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, inks in sets.items():
            pot = Path(tmp) / f"{name}.pot"
            write_pot(pot, inks)
            res = {}
            for m in models:
                r = evaluate_ink(str(pot), m, threads=1, batch_size=1)
                res[m] = {k: r[k] for k in ("accuracy", "top5", "samples", "ms_per_sample")}
            if z is not None:
                res["zinnia"] = score_zinnia(z, list(read_pot(pot)))
            results["sets"][name] = res
            for who, r in res.items():
                rows.append((name, who, f"{100 * r['accuracy']:.2f}", f"{100 * r['top5']:.2f}",
                             f"{r['ms_per_sample']:.2f}", r["samples"]))
    print(table(rows, ("set", "recognizer", "top-1 %", "top-5 %", "ms/char", "samples")))
    write_json(a.json, results)


if __name__ == "__main__":
    main()
