"""Training step throughput in float32 against bfloat16 autocast (``precision: bf16``), side by side.

Two trainers of the same recipe, seed and Hooker training lines (the real pipeline: bucketed
minimal padding, augmentation, forward + CTC + backward + AdamW step), one in fp32 and one in
bf16, take their steps alternately on the same batches, so machine noise hits both alike; after
a warm-up the time of every step is summed per precision. Also reported: the mean training loss
of each over the timed steps (the two runs drift apart from the same start, so this is a sanity
check of the arithmetic, not a convergence measure: for that see the recipe study's bf16 row).
bfloat16 is fast only on a CPU with native support (AVX512-BF16 or AMX; ``cpu_bf16`` in the JSON).

    python benchmarks/train_precision.py [--quick] [--threads 1] --json benchmarks/results/train_precision.json
"""

from __future__ import annotations

import tempfile
import time

import torch

from common import SHARED, machine, parser, table, write_json

RECIPES = {
    # the 45-minute / from-scratch recipe of the accuracy work (configs/hooker-darknet-sc.yaml)
    "darknet 48px 2x128, batch 8, shortcut 0.5": dict(height=48, batch_size=8, options={"ctc_shortcut": 0.5}),
    # the teacher candidate (configs/hooker-teacher-h64.yaml)
    "darknet 64px 3x256 dropout 0.5, batch 16": dict(height=64, batch_size=16, options={
        "lstm_layers": 3, "lstm_hidden": 256, "dropout": 0.5}),
}


def compare(name: str, recipe: dict, lines: int, steps: int, threads: int) -> dict:
    from inkpack.train.loop import TrainConfig, Trainer

    torch.set_num_threads(threads)
    trainers, spent, seen, losses = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for prec in ("fp32", "bf16"):
            cfg = TrainConfig(train=str(SHARED / "data/hooker/train.tsv"), out=f"{tmp}/{prec}", limit=lines,
                              progress=False, threads=threads, epochs=1, ckpt_every=10**9, device="cpu",
                              precision=prec, **recipe)
            tr = Trainer(cfg)
            tr.setup()
            trainers[prec], spent[prec], seen[prec], losses[prec] = tr, 0.0, 0, []
        batches = trainers["fp32"]._epoch_batches(0)
        for i, idx in enumerate(batches[: 3 + steps]):
            for prec, tr in trainers.items():  # alternate: both see the same machine state
                b = tr._make_batch(idx)
                t0 = time.perf_counter()
                loss = tr.train_step(b)
                if i >= 3:  # the first 3 steps warm up the allocator and oneDNN's kernels
                    spent[prec] += time.perf_counter() - t0
                    seen[prec] += len(b)
                    losses[prec].append(loss)
    out = {"recipe": name, "threads": threads, "steps_timed": steps}
    for prec in trainers:
        out[f"{prec}_lines_per_s"] = seen[prec] / spent[prec]
        out[f"{prec}_mean_loss"] = sum(losses[prec]) / len(losses[prec])
    out["bf16_speedup"] = out["bf16_lines_per_s"] / out["fp32_lines_per_s"]
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads of each trainer (default 1)")
    a = p.parse_args()
    from inkpack.train.ema import cpu_has_bf16

    lines, steps = (120, 4) if a.quick else (1200, 40)
    rows = [compare(name, r, lines, steps, a.threads) for name, r in RECIPES.items()]
    print(table([(r["recipe"], f"{r['fp32_lines_per_s']:.1f}", f"{r['bf16_lines_per_s']:.1f}",
                  f"{r['bf16_speedup']:.2f}x", f"{r['fp32_mean_loss']:.1f} / {r['bf16_mean_loss']:.1f}")
                 for r in rows],
                ("recipe", "fp32 lines/s", "bf16 lines/s", "bf16 / fp32", "mean loss fp32 / bf16")))
    write_json(a.json, {"quick": a.quick, "cpu_bf16": cpu_has_bf16(), "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
