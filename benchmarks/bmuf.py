"""BMUF versus DDP: synchronizations, a fitted communication model, and (optionally) convergence.

Usage: ``benchmarks/bmuf.py [--quick] [--json OUT] [--convergence MINUTES [--runs ddp,bmuf_tau8,...] [--workdir DIR]]``.

(a) COMPUTED, no training: synchronizations and bytes per epoch of the shipped model
    (``models/hooker-darknet``: its parameter count) over the Hooker train set's steps per
    epoch (width-bucketed global batches of 16, as ``configs/hooker-darknet.yaml`` trains):
    DDP all-reduces every gradient every step; BMUF all-reduces parameters + float buffers
    + a stop flag once per block of τ = 4, 8, 16 steps (blocks run across epochs); with
    ``--block-moments`` (τ = 8 row) also AdamW's two moment buffers per parameter.
(c) MEASURED then SIMULATED: gloo all-reduce times of 2 processes on this machine (loopback,
    buffers 1 KB … 64 MB) fitted by least squares to the ring model of 2 workers,
    ``T = 2(N−1)·α + 2(N−1)/N · bytes / B`` (N = 2: ``2α + bytes/B``); and the MEASURED
    compute time of one training step of the shipped architecture (CPU, batch of 16 lines at
    the median Hooker width; the CPU may be shared with other jobs). Step times for 8, 64 and
    256 workers over 10 and 100 Gbit/s links are then SIMULATED with that ring model: the
    fitted latency α, and bandwidth min(link, fitted loopback bandwidth); DDP pays one
    all-reduce of the gradients per step (no overlap with backward: an upper bound; the
    overlapped lower bound max(compute, comm) is given too), BMUF one of the model per τ steps.
(b) MEASURED, only with ``--convergence MINUTES``: ``inkpack train --nproc 2`` on Hooker
    (CPU), DDP then BMUF τ = 8 for the same number of steps (the same global batches, hence
    samples); val CER at every epoch end of both. ``--quick`` makes it a smoke run on a few
    lines. Not run by default.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
HOOKER = ROOT.parent / "shared" / "data" / "hooker"

from common import machine, parser, table, write_json

from inkpack.train.bmuf import BYTES_F32

TAUS = (4, 8, 16)
WORKERS = (8, 64, 256)
LINKS_GBIT = (10, 100)
BATCH, HEIGHT = 16, 48
ASSUMED_GPU_STEP = 0.05  # s/step: an ASSUMPTION (not measured) for a GPU worker, to show comm-bound regimes


# ------------------------------------------------------------------ (a) computed
def model_sizes() -> dict:
    from safetensors import safe_open

    meta = json.loads((ROOT / "models" / "hooker-darknet.json").read_text(encoding="utf-8"))
    params = buffers = 0
    with safe_open(str(ROOT / "models" / "hooker-darknet.safetensors"), "pt") as f:
        for k in f.keys():
            n = math.prod(f.get_slice(k).get_shape())
            if k.endswith(("running_mean", "running_var")):
                buffers += n
            elif not k.endswith("num_batches_tracked"):
                params += n
    return {"model": "hooker-darknet", "arch": meta["arch"], "parameters": params, "float_buffers": buffers}


def hooker_steps() -> tuple[int, int, float]:
    """(lines, steps per epoch, median width at height 48) of the Hooker train set."""
    from PIL import Image

    from inkpack.batching import bucket_batches

    rows = (HOOKER / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    widths = []
    for r in rows:
        with Image.open(HOOKER / r.split("\t")[0]) as im:  # header only
            w, h = im.size
        widths.append(max(1, round(w * HEIGHT / h)))
    steps = len(bucket_batches(widths, BATCH, shuffle=True, seed=1234 * 1000))
    return len(widths), steps, float(np.median(widths))


def sync_table(sizes: dict, steps: int) -> list[dict]:
    grad = sizes["parameters"] * BYTES_F32
    payload = (sizes["parameters"] + sizes["float_buffers"] + 1) * BYTES_F32
    rows = [{"sync": "ddp", "syncs_per_epoch": steps, "bytes_per_sync": grad, "bytes_per_epoch": steps * grad}]
    for tau in TAUS:
        n = steps / tau  # blocks run across epoch ends: the average per epoch
        rows.append({"sync": f"bmuf tau={tau}", "syncs_per_epoch": n, "bytes_per_sync": payload,
                     "bytes_per_epoch": n * payload})
    # --block-moments: AdamW's two moment buffers per parameter travel with the model
    payload_m = payload + 2 * sizes["parameters"] * BYTES_F32
    rows.append({"sync": "bmuf tau=8 + moments", "syncs_per_epoch": steps / 8, "bytes_per_sync": payload_m,
                 "bytes_per_epoch": steps / 8 * payload_m})
    return rows


# ------------------------------------------------------------------ (c) measured + simulated
def _allreduce_worker(rank: int, port: int, sizes: list[int], reps: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    res = {}
    for nbytes in sizes:
        t = torch.ones(max(1, nbytes // 4))
        for _ in range(2):
            dist.all_reduce(t)
        times = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        res[nbytes] = float(np.median(times))
    if rank == 0:
        Path(out).write_text(json.dumps(res), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def measure_allreduce(quick: bool) -> dict:
    import socket

    import torch.multiprocessing as mp

    sizes = [1024 * 4 ** i for i in range(9)]  # 1 KB … 64 MB
    reps = 5 if quick else 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.json")
        mp.spawn(_allreduce_worker, args=(port, sizes, reps, out), nprocs=2, join=True)
        times = {int(k): v for k, v in json.loads(Path(out).read_text(encoding="utf-8")).items()}
    x = np.array(sorted(times), dtype=float)
    y = np.array([times[int(b)] for b in x])
    # least squares on relative errors (rows divided by y): small buffers weigh as much as large
    a, b = np.linalg.lstsq(np.stack([np.ones_like(x), x], 1) / y[:, None], np.ones_like(y), rcond=None)[0]
    pred = a + b * x
    return {"measured_s": {str(int(k)): times[int(k)] for k in x}, "repeats_median_of": reps,
            "fit": {"alpha_s": float(a / 2), "bandwidth_Bps": float(1 / b) if b > 0 else float("inf"),
                    "max_rel_error": float(np.max(np.abs(pred - y) / y))}}


def ring_time(nbytes: float, n: int, alpha: float, bw: float) -> float:
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / bw


def measure_compute(median_width: float, quick: bool) -> dict:
    """Seconds of one training step (forward, CTC, backward, AdamW) of the shipped architecture."""
    import torch.nn.functional as F

    from inkpack.models import build_model

    meta = json.loads((ROOT / "models" / "hooker-darknet.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    model = build_model(meta["arch"], 85, **meta["options"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    w = int(median_width)
    x = torch.rand(BATCH, 1, HEIGHT, w)
    widths = torch.full((BATCH,), w, dtype=torch.long)
    tl = torch.full((BATCH,), 20, dtype=torch.long)
    tg = torch.randint(1, 85, (BATCH * 20,))
    times = []
    for _ in range(2 if quick else 5):
        t0 = time.perf_counter()
        logits, lengths = model(x, torch.full((BATCH,), HEIGHT), widths)
        loss = F.ctc_loss(logits.log_softmax(-1), tg, lengths, tl, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"seconds_per_step": float(np.median(times[1:] if len(times) > 1 else times)), "batch": BATCH,
            "width": w, "height": HEIGHT, "threads": torch.get_num_threads()}


def predict(sizes: dict, fit: dict, computes: dict[str, float]) -> list[dict]:
    """Step times under the ring model: fitted latency, the link's bandwidth."""
    grad = sizes["parameters"] * BYTES_F32
    payload = (sizes["parameters"] + sizes["float_buffers"] + 1) * BYTES_F32
    alpha = fit["alpha_s"]
    rows = []
    for label, compute_s in computes.items():
        for gbit in LINKS_GBIT:
            bw = gbit * 1e9 / 8
            for n in WORKERS:
                ddp_comm = ring_time(grad, n, alpha, bw)
                bm_comm = ring_time(payload, n, alpha, bw) / 8
                rows.append({"compute": label, "compute_s": compute_s, "link_gbit": gbit, "workers": n,
                             "ddp_step_s": compute_s + ddp_comm, "ddp_overlapped_step_s": max(compute_s, ddp_comm),
                             "bmuf8_step_s": compute_s + bm_comm, "ddp_comm_s": ddp_comm,
                             "bmuf8_comm_per_step_s": bm_comm, "bmuf8_speedup": (compute_s + ddp_comm) / (
                                 compute_s + bm_comm)})
    return rows


# ------------------------------------------------------------------ (b) measured, opt-in
def _history(out: Path) -> list[dict]:
    p = out / "history.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else []


def _ckpt_step(out: Path) -> int:
    p = out / "last.pt"
    from inkpack.train.checkpoint import load_checkpoint  # weights only, allow-listed

    ckpt = load_checkpoint(p) if p.exists() else None
    return int(ckpt["global_step"]) if ckpt else 0


# --convergence runs: name -> extra `inkpack train` options (after DDP, each for DDP's step count)
SYNC_RUNS = {
    "ddp": ["--sync", "ddp"],
    "bmuf_tau8": ["--sync", "bmuf", "--block-steps", "8"],
    "bmuf_tau8_nesterov": ["--sync", "bmuf", "--block-steps", "8", "--nesterov"],
    "bmuf_tau8_eta0": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0"],
    # post-local SGD: one epoch (345 steps of the 2-process Hooker run) synchronous, then blocks
    "bmuf_tau8_warm": ["--sync", "bmuf", "--block-steps", "8", "--block-warmup", "345"],
    "bmuf_tau8_eta0_warm": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0", "--block-warmup", "345"],
    # and a block learning rate above 1: each block's averaged update scaled by 1.5, no momentum memory
    "bmuf_tau8_eta0_warm_zeta15": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0", "--block-lr",
                                   "1.5", "--block-warmup", "345"],
    # not run yet: half the block (4x fewer synchronizations than DDP instead of 8x), and the local
    # rate x sqrt(2) (each worker's AdamW steps see the gradient noise of half the global batch)
    "bmuf_tau4_eta0_warm": ["--sync", "bmuf", "--block-steps", "4", "--block-momentum", "0", "--block-warmup", "345"],
    "bmuf_tau8_eta0_warm_lr14": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0", "--block-warmup",
                                 "345", "--lr", "0.0014"],
    # the workers' AdamW moments averaged at each synchronization too (3x the bytes of a sync)
    "bmuf_tau8_eta0_warm_moments": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0",
                                    "--block-warmup", "345", "--block-moments"],
    # the noise floor (not run yet): DDP and the best BMUF again with another seed (initial weights,
    # batch order, augmentation), so that a gap can be set against the spread of one method
    "ddp_seed2": ["--sync", "ddp", "--seed", "4321"],
    "bmuf_tau8_eta0_warm_moments_seed2": ["--sync", "bmuf", "--block-steps", "8", "--block-momentum", "0",
                                          "--block-warmup", "345", "--block-moments", "--seed", "4321"],
}


def convergence(minutes: float, quick: bool, workdir: Path, names: list[str]) -> dict:
    """DDP for ``minutes / 2``, then each other run in ``names`` for DDP's number of steps (the
    same global batches, hence samples). A run whose folder in ``workdir`` already holds that many
    steps is reused, so a killed study resumes and a variant can be added later."""
    import yaml

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cfg = yaml.safe_load((ROOT / "configs" / "hooker-darknet.yaml").read_text(encoding="utf-8"))
    cfg.update(train=str(HOOKER / "train.tsv"), val=str(HOOKER / "val.tsv"), threads=1, time_limit=0)
    if quick:  # a smoke run of the code path, not a measurement
        cfg.update(limit=48, val_limit=16, batch_size=8, epochs=3)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    common = ["--config", str(workdir / "config.yaml"), "--nproc", "2"]
    runs = {}
    half = max(0.1, minutes / 2)
    steps = 0
    for name in ["ddp", *[n for n in names if n != "ddp"]]:
        out = workdir / name
        extra = list(SYNC_RUNS[name])
        if name == "ddp":
            extra += ["--time-limit", str(half)]
        else:
            extra += ["--max-steps", str(max(1, steps)), "--time-limit", str(half * 1.5)]
        done = _ckpt_step(out)
        t0 = time.time()
        if not done or (name != "ddp" and done < steps):
            cmd = [sys.executable, "-m", "inkpack", "train", *common, "--out", str(out), *extra]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SystemExit(f"convergence run {name} failed:\n{(res.stdout + res.stderr)[-2000:]}")
        steps = steps or _ckpt_step(out)
        hist = _history(out)
        runs[name] = {"steps": _ckpt_step(out), "wall_s": time.time() - t0, "reused": bool(done),
                      "options": extra,
                      "epochs": [{k: h.get(k) for k in ("epoch", "step", "val_cer", "syncs", "sync_bytes")}
                                 for h in hist]}
    cmp = []
    for i, d in enumerate(runs["ddp"]["epochs"]):
        row = {"epoch": d["epoch"], "samples": d["step"] * cfg["batch_size"], "ddp_val_cer": d["val_cer"],
               "ddp_syncs": d["syncs"]}
        for name in runs:
            if name != "ddp" and i < len(runs[name]["epochs"]):
                row[f"{name}_val_cer"] = runs[name]["epochs"][i]["val_cer"]
                row[f"{name}_syncs"] = runs[name]["epochs"][i]["syncs"]
        cmp.append(row)
    return {"minutes": minutes, "quick": quick, "runs": runs, "at_equal_samples": cmp}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--convergence", type=float, metavar="MINUTES",
                   help="(b): train DDP then BMUF tau=8 on Hooker with 2 CPU processes (about MINUTES in all)")
    p.add_argument("--runs", default="ddp,bmuf_tau8",
                   help="with --convergence: the runs, comma-separated, from " + ", ".join(SYNC_RUNS))
    p.add_argument("--workdir", help="with --convergence: keep the runs here and reuse finished ones "
                                     "(default: a temporary folder)")
    a = p.parse_args()
    res: dict = {"machine": machine()}
    sizes = model_sizes()
    lines, steps, med_w = hooker_steps()
    res["a_computed_syncs_per_epoch"] = {"what": "computed from sizes, nothing trained", **sizes,
                                         "hooker_train_lines": lines, "global_batch": BATCH,
                                         "steps_per_epoch": steps, "rows": sync_table(sizes, steps)}
    comm = measure_allreduce(a.quick)
    comp = measure_compute(med_w, a.quick)
    res["c_communication_model"] = {
        "measured": {"gloo_allreduce_2proc_loopback": comm, "compute_per_step": comp},
        "simulated": {"model": "ring all-reduce 2(N-1)*alpha + 2(N-1)/N*bytes/bandwidth; alpha = fitted gloo "
                               "loopback latency; bandwidth = the link's (the fitted loopback bandwidth is gloo's "
                               "CPU reduction speed on this machine, reported above, not a network's); DDP without "
                               "overlap of communication and backward (upper bound; overlapped: lower bound)",
                      "assumed_gpu_step_s": ASSUMED_GPU_STEP,
                      "rows": predict(sizes, comm["fit"], {"measured_cpu": comp["seconds_per_step"],
                                                           "assumed_gpu": ASSUMED_GPU_STEP})}}
    if a.convergence:
        names = [n for n in a.runs.split(",") if n]
        bad = [n for n in names if n not in SYNC_RUNS]
        if bad:
            p.error(f"--runs: unknown {bad}; known: {', '.join(SYNC_RUNS)}")
        if a.workdir:
            res["b_convergence"] = {"what": "measured",
                                    **convergence(a.convergence, a.quick, Path(a.workdir), names)}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                res["b_convergence"] = {"what": "measured", **convergence(a.convergence, a.quick, Path(tmp), names)}
    else:
        res["b_convergence"] = {"what": "not run (pass --convergence MINUTES)"}

    print(table([(r["sync"], f"{r['syncs_per_epoch']:.1f}", f"{r['bytes_per_epoch'] / 1e6:.1f}")
                 for r in res["a_computed_syncs_per_epoch"]["rows"]], ("sync", "syncs/epoch", "MB/epoch")))
    fit = comm["fit"]
    print(f"\ngloo 2-proc fit: alpha {fit['alpha_s'] * 1e6:.1f} us, bandwidth {fit['bandwidth_Bps'] / 1e9:.2f} GB/s "
          f"(max rel. error {fit['max_rel_error']:.2f}); compute {comp['seconds_per_step']:.3f} s/step")
    print(table([(r["compute"], r["link_gbit"], r["workers"], f"{r['ddp_step_s']:.4f}",
                  f"{r['ddp_overlapped_step_s']:.4f}", f"{r['bmuf8_step_s']:.4f}", f"{r['bmuf8_speedup']:.2f}")
                 for r in res["c_communication_model"]["simulated"]["rows"]],
                ("compute", "Gbit/s", "workers", "DDP s/step", "DDP overlap", "BMUF8 s/step", "x")))
    if "at_equal_samples" in res["b_convergence"]:
        others = [n for n in res["b_convergence"]["runs"] if n != "ddp"]
        print(table([(c["epoch"], c["samples"], c["ddp_val_cer"], *[c.get(f"{n}_val_cer") for n in others],
                      c["ddp_syncs"], *[c.get(f"{n}_syncs") for n in others])
                     for c in res["b_convergence"]["at_equal_samples"]],
                    ("epoch", "samples", "DDP CER", *[f"{n} CER" for n in others], "DDP syncs",
                     *[f"{n} syncs" for n in others])))
    write_json(a.json, res)


if __name__ == "__main__":
    main()
