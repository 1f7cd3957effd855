"""Training throughput of the ``mdlstm`` model: padding versus example packing (seed 000).

Usage: ``benchmarks/packing.py [--quick] [--json OUT] [--png PATH] [--model mdlstm|darknet-dblstm]``.
``--model darknet-dblstm`` measures the CNN-DBLSTM packed path instead (``main_cnn``: Hooker
line widths at height 48, random batches of 32, pad_min vs buckets vs pack; its own JSON).

For each size distribution the same model (default options, train mode) runs training
steps (forward + CTC loss + backward, no optimiser step) on batches of 64 images of random
pixels of the real sizes (content does not change the speed), under four batchings:

* ``pad_max``: random batches, every image padded to the largest of the dataset (all its
  batches have one shape, so one or two batches measure it);
* ``pad_min``: random batches, each padded to its own largest example (the seed's baseline);
* ``buckets``: minimal padding over width-sorted buckets (``bucket_batches``; batches spread
  evenly over the width range);
* ``pack``: the random batches of ``pad_min``, packed into canvases (``packed_forward``).

Sizes: ``words`` are the IAM-OnDB-derived word boxes (``benchmarks/data``, IAM 300 dpi scale),
``lines`` the IAM line boxes (``iam-sizes/lines.tsv``), ``hooker`` the Hooker line images
(JPEG headers only). The model is fed 150 dpi images: IAM boxes are scaled by ``SCALE`` =
0.5 (heights keep their spread, as a height-free MDLSTM allows); Hooker lines, stored at
height 96, are scaled to the median IAM line height at 150 dpi (60 px). The full run adds
``words_300dpi`` (words at full scan resolution) to show how the gain grows with size.

Timing: one thread, process CPU time (the machine is shared, so wall time mostly measures
other jobs; it is in the JSON too). Reported per batching: real pixels/s and examples/s;
for ``pack`` its speed-up over each baseline (ratio of real pixels/s, measured side by side
in one run), the canvas fill (real pixels / canvas pixels of the input canvases), and the
packing cost (input packing + the layouts computed inside the forward pass) relative to the
step. ``max_abs_diff`` is the packed-versus-alone check (logits, per-example CTC losses and
parameter gradients of a small float64 model; every example also run alone) of this run.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from common import write_json

from inkpack.batching import bucket_batches, pad_collate, random_batches
from inkpack.models import build_model
from inkpack.packing import pack_options, packed_forward, prepare
from inkpack.packing import pack

SEED = 20240611
SCALE = 0.5  # 300 dpi IAM boxes -> 150 dpi model input
NUM_CLASSES = 80
SMALL: dict = {"hidden": [2, 3, 4], "conv_features": [3, 5], "dropout": 0.0}  # exactness-check model
CNN_SMALL: dict = {"height": 48, "feat_dim": 16, "lstm_hidden": 8, "dropout": 0.0, "norm": "none"}
CNN_HEIGHT = 48  # darknet-dblstm section: Hooker lines scaled to this height
GOALS = {"words": {"speedup_vs_pad_min": 6.6, "fill_ratio": 0.9, "speedup_vs_buckets": 1.0},
         "lines": {"speedup_vs_pad_min": 1.5, "fill_ratio": 0.9, "speedup_vs_buckets": 1.0}}


def word_size_rows() -> list[str]:
    """Rows ``id, w, h`` of the word boxes; derived from IAM-OnDB ink, so made here on first use
    (``benchmarks/data/make_word_sizes.py``) and never committed."""
    tsv = ROOT / "benchmarks" / "data" / "iamondb_word_sizes.tsv"
    if not tsv.exists():
        npz = DATA / "iamondb" / "train.npz"
        if not npz.exists():
            raise FileNotFoundError(f"{tsv} absent and {npz} absent to make it from")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data" / "make_word_sizes.py")], check=True)
    return tsv.read_text().splitlines()[1:]


def load_sizes() -> dict[str, list[tuple[int, int]]]:
    """name -> (h, w) at the model's input scale."""
    def scaled(h: float, w: float, s: float) -> tuple[int, int]:
        return max(1, round(h * s)), max(1, round(w * s))

    out = {}
    rows = word_size_rows()
    out["words"] = [scaled(int(r.split("\t")[2]), int(r.split("\t")[1]), SCALE) for r in rows]
    out["words_300dpi"] = [scaled(int(r.split("\t")[2]), int(r.split("\t")[1]), 1.0) for r in rows]
    rows = (DATA / "iam-sizes" / "lines.tsv").read_text().splitlines()[1:]
    lines = [(int(r.split("\t")[2]), int(r.split("\t")[1])) for r in rows]
    out["lines"] = [scaled(h, w, SCALE) for h, w in lines]
    iam_h = float(np.median([h for h, _ in lines])) * SCALE
    hooker = []
    for line in (DATA / "hooker" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        with Image.open(DATA / "hooker" / line.split("\t", 1)[0]) as im:  # header only
            w, h = im.size
        hooker.append(scaled(h, w, iam_h / h))
    out["hooker"] = hooker
    return out


def spread_buckets(sizes: list[tuple[int, int]], bs: int, k: int) -> list[list[int]]:
    """``k`` width-bucketed batches spread evenly over the width range (a few random ones
    would all be narrow or all wide; these stand for a whole epoch)."""
    batches = [b for b in bucket_batches([w for _, w in sizes], bs, seed=SEED) if len(b) == bs]
    batches.sort(key=lambda b: sum(sizes[i][1] for i in b))
    return [batches[int((j + 0.5) * len(batches) / k)] for j in range(k)]


def make_images(sizes: list[tuple[int, int]], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.rand(1, h, w, generator=gen) for h, w in sizes]


def ctc_step(model, batch, forward) -> tuple[float, float]:
    """Forward + CTC + backward; returns (CPU, wall) seconds. Targets: half the output frames."""
    t0, w0 = time.process_time(), time.perf_counter()
    logits, lengths = forward(model, batch)
    tl = (lengths // 2).clamp(min=1)
    targets = torch.randint(1, NUM_CLASSES, (int(tl.sum()),), generator=torch.Generator().manual_seed(0))
    loss = F.ctc_loss(logits.log_softmax(-1), targets, lengths, tl, zero_infinity=True)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.process_time() - t0, time.perf_counter() - w0


def padded_forward(model, batch):
    return model(batch.images, batch.heights, batch.widths)


def padded_pseq_forward(model, batch):
    """A CNN-DBLSTM's padded forward with its DBLSTM on a ``PackedSequence`` (the former way)."""
    lengths = model.output_lengths(batch.widths).clamp(min=1)
    return model.fc(model.sequence(model.features(batch.images, batch.widths), lengths, packed=True)), lengths


def one_step(model, sizes, idx, kind, max_hw, gen) -> dict:
    """One training step of batch ``idx`` under batching ``kind``; CPU and wall seconds."""
    ims = make_images([sizes[i] for i in idx], gen)
    pack_t = 0.0
    if kind.startswith("pack"):  # pack_pseq (CNN models): the DBLSTM on a PackedSequence
        t0 = time.process_time()
        batch = prepare(model, pack(ims, **pack_options(model)))
        pack_t = time.process_time() - t0
        st: dict = {}
        if kind == "pack_pseq":
            from inkpack.packing import cnn as packed_cnn

            cpu, wall = ctc_step(model, batch, lambda m, b: packed_cnn.packed_forward(m, b, st, padded_lstm=False))
        else:
            cpu, wall = ctc_step(model, batch, lambda m, b: packed_forward(m, b, stats=st))
        pack_t += st.get("layout_s", 0.0)
    else:  # *_dirs (CNN models): the DBLSTM of the packed path (padded directions)
        batch = pad_collate(ims, pad_to=max_hw if kind == "pad_max" else None)
        cpu, wall = ctc_step(model, batch, padded_pseq_forward if kind.endswith("_pseq") else padded_forward)
    return {"cpu": cpu, "wall": wall, "px": batch.real_pixels, "ex": len(idx),
            "canvas": batch.canvas_pixels, "pack": pack_t}


def run_interleaved(model, sizes, plan, nb, max_hw, gen) -> dict:
    """Steps of all batchings taken in turn (batch j of each, then j + 1, ...), so that load
    changes on the shared machine hit every batching alike. Rates use process CPU time."""
    acc = {k: {"cpu": 0.0, "wall": 0.0, "px": 0, "ex": 0, "canvas": 0, "pack": 0.0} for k in plan}
    for j in range(max(nb.values())):
        for kind in plan:
            if j < nb[kind]:
                for key, v in one_step(model, sizes, plan[kind][j], kind, max_hw, gen).items():
                    acc[kind][key] += v
    stats = {}
    for kind, a in acc.items():
        stats[kind] = {"batches": nb[kind], "cpu_seconds": a["cpu"], "wall_seconds": a["wall"],
                       "real_px_per_s": a["px"] / a["cpu"], "examples_per_s": a["ex"] / a["cpu"],
                       "fill_ratio": a["px"] / a["canvas"]}
    stats["pack"]["layout_share"] = acc["pack"]["pack"] / acc["pack"]["cpu"]  # packing + layouts vs step
    stats["pack"]["packing_ms_per_batch"] = 1000 * acc["pack"]["pack"] / nb["pack"]
    for kind in stats:
        stats[kind]["step_ms"] = 1000 * stats[kind]["cpu_seconds"] / nb[kind]
    return stats


def exactness(seed: int = 0, n: int = 6, arch: str = "mdlstm") -> float:
    """Max |packed - alone| over logits, per-example losses and parameter gradients (float64)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if arch == "mdlstm":
        model = build_model("mdlstm", 9, **SMALL).double().eval()
        ims = [torch.rand(1, rng.randint(1, 40), rng.randint(1, 120), dtype=torch.float64) for _ in range(n)]
    else:  # no BatchNorm (its train-mode statistics span the batch), no dropout
        model = build_model(arch, 9, **CNN_SMALL).double().train()
        ims = [torch.rand(1, CNN_SMALL["height"], rng.randint(1, 200), dtype=torch.float64) for _ in range(n)]
    labels = [torch.randint(1, 9, (rng.randint(1, 2),)) for _ in ims]

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    lg, ln = packed_forward(model, pack(ims, **pack_options(model)))
    tl = torch.tensor([len(l) for l in labels])
    losses = F.ctc_loss(lg.log_softmax(-1), torch.cat(labels), ln, tl, reduction="none", zero_infinity=True)
    g_packed = grads(losses.sum())
    diff = 0.0
    g_alone = [torch.zeros_like(p) for p in model.parameters()]
    for i, im in enumerate(ims):
        l1, n1 = model(im[None], torch.tensor([im.shape[1]]), torch.tensor([im.shape[2]]))
        diff = max(diff, abs(int(n1[0]) - int(ln[i])), (l1[: n1[0], 0] - lg[: n1[0], i]).abs().max().item())
        loss = F.ctc_loss(l1.log_softmax(-1), labels[i], n1, tl[i : i + 1], reduction="none", zero_infinity=True)
        diff = max(diff, (loss[0] - losses[i]).abs().item())
        for acc, g in zip(g_alone, grads(loss.sum())):
            acc += g
    return max([diff] + [(a - b).abs().max().item() for a, b in zip(g_alone, g_packed)])


def draw_canvas(sizes: list[tuple[int, int]], path: Path, model) -> float:
    """Picture of one packed input batch (examples outlined, grey = separators / free);
    returns its fill ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from inkpack.packing import pack_layout

    lay = pack_layout([h for h, _ in sizes], [w for _, w in sizes], **pack_options(model))
    cols = 2 if lay.n_canvas > 3 else 1
    rows = -(-lay.n_canvas // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(6 * cols, 0.9 + 6 * rows * lay.height / lay.width))
    colours = [matplotlib.colormaps["tab20"](j) for j in range(20) if j not in (14, 15)]  # no greys
    for c, ax in enumerate(axes.flat):
        ax.axis("off")
        if c >= lay.n_canvas:
            continue
        ax.add_patch(Rectangle((0, 0), lay.width, lay.height, color="0.8"))
        for i in range(len(lay)):
            if lay.canvas[i] == c:
                ax.add_patch(Rectangle((lay.x[i], lay.y[i]), lay.w[i], lay.h[i], facecolor=colours[i % len(colours)],
                                       edgecolor="black", linewidth=0.5))
        ax.set_xlim(-2, lay.width + 2)
        ax.set_ylim(lay.height + 2, -2)
        ax.set_aspect("equal")
    padded = len(sizes) * max(h for h, _ in sizes) * max(w for _, w in sizes)
    fig.suptitle(f"{len(lay)} word boxes (150 dpi) packed into {lay.n_canvas} canvases of "
                 f"{lay.height}x{lay.width} px: fill {lay.fill_ratio:.2f}\n(padding them to the batch's "
                 f"largest would fill {lay.real_cells / padded:.2f}); grey = separators and free cells",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return lay.fill_ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches (about 3 minutes on 2 cores)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--png", type=Path, help="picture of a packed canvas (default: docs/packed_canvas.png "
                    "on full runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=["mdlstm", "darknet-dblstm"], default="mdlstm",
                    help="darknet-dblstm: Hooker lines at height 48, batches of 32 (its own JSON)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model != "mdlstm":
        main_cnn(args)
        return
    torch.manual_seed(SEED)
    n_batches = {"pad_max": 1, "pad_min": 2, "buckets": 2, "pack": 2} if args.quick else \
        {"pad_max": 2, "pad_min": 5, "buckets": 5, "pack": 5}
    batch_size = 64
    datasets = ["words", "lines"] if args.quick else ["words", "lines", "hooker", "words_300dpi"]

    t_start = time.perf_counter()
    max_abs_diff = exactness()
    sizes_all = load_sizes()
    model = build_model("mdlstm", NUM_CLASSES)
    model.train()
    gen = torch.Generator().manual_seed(SEED)
    results: dict = {"max_abs_diff": max_abs_diff, "settings": {
        "scale": SCALE, "batch_size": batch_size, "batches": n_batches, "threads": args.threads,
        "quick": args.quick, "model": "mdlstm (default options)"}}
    rows = []
    for name in datasets:
        sizes = sizes_all[name]
        bs = batch_size
        nb = n_batches if name != "words_300dpi" else {k: max(1, v // 2) for k, v in n_batches.items()}
        max_hw = (max(h for h, _ in sizes), max(w for _, w in sizes))
        rand = random_batches(len(sizes), bs, seed=SEED)
        plan = {"pack": rand, "pad_min": rand, "buckets": spread_buckets(sizes, bs, nb["buckets"]),
                "pad_max": rand}
        for kind in ("pack", "pad_min"):  # warm-up (allocator, buffer pools), not timed
            one_step(model, sizes, rand[-1], kind, max_hw, gen)
        stats = run_interleaved(model, sizes, plan, nb, max_hw, gen)
        p = stats["pack"]
        res = {
            "speedup_vs_pad_min": p["real_px_per_s"] / stats["pad_min"]["real_px_per_s"],
            "speedup_vs_buckets": p["real_px_per_s"] / stats["buckets"]["real_px_per_s"],
            "speedup_vs_pad_max": p["real_px_per_s"] / stats["pad_max"]["real_px_per_s"],
            "fill_ratio": p["fill_ratio"],
            "layout_share_of_step": p["layout_share"],
            "examples": len(sizes), "batch_size": bs, "max_size_hw": max_hw,
            "median_size_hw": [float(np.median([s[0] for s in sizes])), float(np.median([s[1] for s in sizes]))],
            "strategies": stats,
        }
        if name in GOALS:
            res["goals"] = GOALS[name]
            res["missed"] = [k for k, v in GOALS[name].items() if res[k] < v]
        results[name] = res
        for kind, s in stats.items():
            rows.append((name, kind, s))
    if args.png or not args.quick:
        png = args.png or ROOT / "docs" / "packed_canvas.png"
        words = sizes_all["words"]
        draw_canvas([words[i] for i in random_batches(len(words), 64, seed=SEED)[0]], png, model)
        results["png"] = str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png)
    results["seconds"] = time.perf_counter() - t_start

    print(f"\nmdlstm training throughput (forward + CTC + backward), {args.threads} thread(s)")
    print(f"{'sizes':12} {'batching':8} {'batches':>7} {'step ms':>8} {'real Mpx/s':>10} {'ex/s':>7} {'fill':>5} "
          f"{'pack speed-up':>13}")
    for name, kind, s in rows:
        sp = results[name]["strategies"]["pack"]["real_px_per_s"] / s["real_px_per_s"]
        print(f"{name:12} {kind:8} {s['batches']:7d} {s['step_ms']:8.0f} {s['real_px_per_s'] / 1e6:10.3f} "
              f"{s['examples_per_s']:7.1f} {s['fill_ratio']:5.2f} {sp:12.2f}x")
    print()
    for name in datasets:
        r = results[name]
        goal = GOALS.get(name, {})
        misses = [f"{k} {r[k]:.3f} < {v}" for k, v in goal.items() if r[k] < v]
        print(f"{name}: pack vs pad_min {r['speedup_vs_pad_min']:.2f}x, vs buckets {r['speedup_vs_buckets']:.2f}x, "
              f"vs pad_max {r['speedup_vs_pad_max']:.2f}x, fill {r['fill_ratio']:.3f}, packing "
              f"{r['strategies']['pack']['packing_ms_per_batch']:.1f} ms = "
              f"{100 * r['layout_share_of_step']:.1f}% of the packed step"
              + (f"; MISSED goals: {', '.join(misses)}" if misses else ""))
    print(f"packed vs alone max |diff|: {max_abs_diff:.2e}; total {results['seconds']:.0f} s")
    write_json(args.json, results)


def main_cnn(args) -> None:
    """``--model darknet-dblstm``: pad_min vs buckets vs pack on the Hooker line widths.

    Lines have the model's height (48), so only widths vary. Rates here count the packing
    (layout + canvas copy) in the packed step's time."""
    torch.manual_seed(SEED)
    t_start = time.perf_counter()
    arch, bs = args.model, 32
    n_batches = 2 if args.quick else 5
    max_abs_diff = exactness(arch=arch)
    sizes = []
    for line in (DATA / "hooker" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        with Image.open(DATA / "hooker" / line.split("\t", 1)[0]) as im:  # header only
            w, h = im.size
        sizes.append((CNN_HEIGHT, max(1, round(w * CNN_HEIGHT / h))))
    model = build_model(arch, NUM_CLASSES, height=CNN_HEIGHT).train()
    gen = torch.Generator().manual_seed(SEED)
    rand = random_batches(len(sizes), bs, seed=SEED)
    buckets = spread_buckets(sizes, bs, n_batches)
    plan = {"pack": rand, "pack_pseq": rand, "pad_min": rand, "buckets": buckets, "buckets_pseq": buckets}
    nb = {k: n_batches for k in plan}
    for kind in ("pack", "pad_min"):  # warm-up, not timed
        one_step(model, sizes, rand[-1], kind, None, gen)
    stats = run_interleaved(model, sizes, plan, nb, None, gen)
    p0 = dict(stats["pack"])  # the same layouts serve pack_pseq
    for kind, s in stats.items():  # the packed step pays for its packing
        pack_s = p0["packing_ms_per_batch"] * s["batches"] / 1000 if kind.startswith("pack") else 0.0
        real_px = s["real_px_per_s"] * s["cpu_seconds"]
        s["real_px_per_s"] = real_px / (s["cpu_seconds"] + pack_s)
        s["examples_per_s"] = s["examples_per_s"] * s["cpu_seconds"] / (s["cpu_seconds"] + pack_s)
        s["step_ms"] = 1000 * (s["cpu_seconds"] + pack_s) / s["batches"]
    p = stats["pack"]
    res = {"max_abs_diff": max_abs_diff, "sizes": "hooker", "examples": len(sizes),
           "median_width": float(np.median([w for _, w in sizes])), "max_width": max(w for _, w in sizes),
           "speedup_vs_pad_min": p["real_px_per_s"] / stats["pad_min"]["real_px_per_s"],
           "speedup_vs_buckets": p["real_px_per_s"] / stats["buckets"]["real_px_per_s"],
           "speedup_vs_buckets_pseq": p["real_px_per_s"] / stats["buckets_pseq"]["real_px_per_s"],
           "lstm_speedup_in_buckets": stats["buckets"]["real_px_per_s"] / stats["buckets_pseq"]["real_px_per_s"],
           "lstm_speedup_in_pack": p["real_px_per_s"] / stats["pack_pseq"]["real_px_per_s"],
           "fill_ratio": p["fill_ratio"], "strategies": stats,
           "settings": {"model": f"{arch} (default options, train mode)", "height": CNN_HEIGHT, "batch_size": bs,
                        "batches": nb, "threads": args.threads, "quick": args.quick}}
    res["seconds"] = time.perf_counter() - t_start
    print(f"\n{arch} training throughput (forward + CTC + backward), Hooker lines at height {CNN_HEIGHT}, "
          f"batches of {bs}, {args.threads} thread(s)")
    print(f"{'batching':8} {'batches':>7} {'step ms':>8} {'real Mpx/s':>10} {'lines/s':>7} {'fill':>5} "
          f"{'pack speed-up':>13}")
    for kind, s in stats.items():
        print(f"{kind:8} {s['batches']:7d} {s['step_ms']:8.0f} {s['real_px_per_s'] / 1e6:10.3f} "
              f"{s['examples_per_s']:7.1f} {s['fill_ratio']:5.2f} {p['real_px_per_s'] / s['real_px_per_s']:12.2f}x")
    print("*_pseq: the DBLSTM on a PackedSequence (the former way); otherwise each direction runs on the "
          "padded batch, lines reversed in place (inkpack.nn.blstm)")
    print(f"pack vs pad_min {res['speedup_vs_pad_min']:.2f}x, vs buckets {res['speedup_vs_buckets']:.2f}x "
          f"(buckets' DBLSTM vs PackedSequence {res['lstm_speedup_in_buckets']:.2f}x), "
          f"fill {res['fill_ratio']:.3f}, packing {p['packing_ms_per_batch']:.1f} ms/batch; packed vs alone "
          f"max |diff| {max_abs_diff:.2e}; total {res['seconds']:.0f} s")
    write_json(args.json, res)


if __name__ == "__main__":
    main()
