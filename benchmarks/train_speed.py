"""Training throughput on 2 cores and single-thread recognition latency on the Hooker lines.

Training: the real pipeline (bucketed minimal padding, augmentation, forward + CTC +
backward + AdamW step) of the shipped architecture, timed after a warm-up.
Latency: the shipped model, one thread, batch 1, JPEGs decoded beforehand; the timed
part is normalisation + resizing + forward + greedy decoding.
Peer figures (Kraken 7.1.1 defaults on this split, same kind of machine) are quoted
from the issue for the ratio column, not re-measured here.
"""

from __future__ import annotations

import tempfile
import time

import torch

from common import SHARED, machine, parser, table, write_json

KRAKEN_TRAIN_LINES_PER_S = 6.6
KRAKEN_MS_PER_LINE = 92.7


def train_throughput(lines: int, steps: int, threads: int) -> dict:
    from inkpack.train.loop import TrainConfig, Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(train=str(SHARED / "data/hooker/train.tsv"), out=tmp, limit=lines,
                          progress=False, threads=threads, epochs=1, ckpt_every=10**9)
        tr = Trainer(cfg)
        tr.setup()
        batches = tr._epoch_batches(0)
        for idx in batches[:3]:  # warm-up (allocator, oneDNN kernels)
            tr.train_step(tr._make_batch(idx))
        n, t0 = 0, time.perf_counter()
        for idx in batches[3 : 3 + steps]:
            b = tr._make_batch(idx)
            tr.train_step(b)
            n += len(b)
        dt = time.perf_counter() - t0
    return {"train_lines_per_s": n / dt, "train_lines_timed": n, "threads": threads}


def latency(n_lines: int) -> dict:
    from inkpack.data.formats.tsv import read_tsv
    from inkpack.data.images import load_gray
    from inkpack.models.io import resolve
    from inkpack.infer.recognizer import open_recognizer

    torch.set_num_threads(1)
    rec = open_recognizer(None, threads=None, decoder="greedy")  # the network + greedy decoding
    recs, _ = read_tsv(str(SHARED / "data/hooker/val.tsv"))
    grays = [load_gray(r.path) for r in recs[:n_lines]]
    for g in grays[:5]:
        rec.recognize_prepared([rec.prepare(g)], 1)
    times = []
    for g in grays:
        t0 = time.perf_counter()
        rec.recognize_prepared([rec.prepare(g)], 1)
        times.append(time.perf_counter() - t0)
    times.sort()
    params = sum(p.numel() for p in rec.model.parameters())
    return {"ms_per_line": 1000 * sum(times) / len(times), "ms_p50": 1000 * times[len(times) // 2],
            "ms_p90": 1000 * times[int(len(times) * 0.9)], "latency_lines": len(times),
            "model": str(resolve(None)), "params": params}


def main() -> None:
    a = parser(__doc__.splitlines()[0]).parse_args()
    lines, steps, n_lat = (160, 6, 40) if a.quick else (1200, 60, 689)
    res = {**train_throughput(lines, steps, threads=2), **latency(n_lat), "quick": a.quick, "machine": machine()}
    res["train_speedup_vs_kraken"] = res["train_lines_per_s"] / KRAKEN_TRAIN_LINES_PER_S
    res["latency_speedup_vs_kraken"] = KRAKEN_MS_PER_LINE / res["ms_per_line"]
    rows = [
        ("training throughput (2 threads)", f"{res['train_lines_per_s']:.1f} lines/s", ">= 33", f"{res['train_speedup_vs_kraken']:.1f}x Kraken's 6.6"),
        ("recognition latency (1 thread)", f"{res['ms_per_line']:.2f} ms/line", "<= 10", f"{res['latency_speedup_vs_kraken']:.1f}x faster than Kraken's 92.7"),
        ("latency p50 / p90", f"{res['ms_p50']:.2f} / {res['ms_p90']:.2f} ms", "", ""),
    ]
    print(table(rows, ("measure", "value", "goal", "vs peer")))
    write_json(a.json, res)


if __name__ == "__main__":
    main()
