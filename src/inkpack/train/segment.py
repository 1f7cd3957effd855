"""Train the page segmenter from PAGE-XML pages (``python -m inkpack.train.segment``).

Checkpoints ``OUT/last.pt`` (atomic, every ``checkpoint_steps`` steps and at each epoch
end) hold model, optimizer, scheduler, epoch, position in the epoch and RNG states; the
page order is a function of (seed, epoch) and each page's augmentation of (seed, epoch,
page), so a killed run started again with the same command continues exactly.
``OUT/history.json`` logs each epoch; the best model by validation loss is saved as
``OUT/best.safetensors`` + ``OUT/best.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from inkpack.errors import ConfigError, InkpackError, ModelFileError
from inkpack.segment.data import load_page_gray, sample
from inkpack.segment.model import build, default_config, save_segmenter
from inkpack.segment.pages import page_pairs, read_gt_page
from inkpack.train.base import optimizer_step
from inkpack.train.config import read_yaml_mapping
from inkpack.train.checkpoint import (_legacy_numpy_globals, atomic_save, load_checkpoint, rng_state,
                                      set_rng_state)

DEFAULTS = {
    "train": None, "val": None, "out": "runs/segment", "epochs": 40, "lr": 3e-3, "weight_decay": 1e-4,
    "warmup_steps": 200, "long_side": 768, "widths": [16, 32, 64, 96], "seed": 1, "threads": 1,
    "time_limit": 0.0, "checkpoint_steps": 100, "max_steps": 0, "augment": True, "max_pages": 0,
}


def load_pages(folder: str, max_pages: int = 0) -> list:
    pairs = page_pairs(folder)
    if max_pages:
        pairs = pairs[:max_pages]
    out = []
    for img, xml in pairs:
        page = read_gt_page(xml)
        out.append((load_page_gray(img), page))
    return out


def read_checkpoint(path: Path) -> dict | None:
    """``load_checkpoint`` (safe loading, one-line errors); checkpoints of the first version of
    this trainer named ``step_in_epoch / global_step / elapsed`` ``pos / step / trained_s``."""
    try:
        return load_checkpoint(path)
    except ModelFileError as e:
        if "missing" not in str(e):
            raise
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
        if not all(k in ck for k in ("model", "pos", "step", "trained_s", "rng")):
            raise
        ck.update(step_in_epoch=ck["pos"], global_step=ck["step"], elapsed=ck["trained_s"])
        return ck


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on every channel + soft Dice on baseline and line maps (thin, rare positives)."""
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = torch.sigmoid(logits)
    dice = 0.0
    for c, wgt in ((0, 1.0), (1, 0.5)):
        inter = (p[:, c] * t[:, c]).sum()
        dice = dice + wgt * (1 - (2 * inter + 1) / (p[:, c].sum() + t[:, c].sum() + 1))
    return bce + dice


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


@torch.no_grad()
def validate(model, pages, long_side: int) -> dict:
    model.eval()
    tot, tp, fp, fn = 0.0, 0, 0, 0
    for gray, page in pages:
        x, t = sample(gray, page, long_side, None)
        tt = torch.from_numpy(t)[None]
        y = model(torch.from_numpy(x)[None, None])
        tot += float(loss_fn(y, tt))
        pred = y[0, 0] > 0
        gt = tt[0, 0] > 0
        tp += int((pred & gt).sum()); fp += int((pred & ~gt).sum()); fn += int((~pred & gt).sum())
    model.train()
    return {"val_loss": tot / max(1, len(pages)), "val_baseline_pixel_f1": 2 * tp / max(1, 2 * tp + fp + fn)}


def train(cfg: dict, log=print) -> dict:
    cfg = {**DEFAULTS, **cfg}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"segment config: unknown key {sorted(unknown)[0]!r}")
    if not cfg["train"]:
        raise ConfigError("segment config: 'train' (a folder of page images + PAGE-XML) is required")
    torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    train_pages = load_pages(cfg["train"], cfg["max_pages"])
    val_pages = load_pages(cfg["val"]) if cfg["val"] else []
    mcfg = default_config(cfg["long_side"], cfg["widths"])
    torch.manual_seed(cfg["seed"])
    model = build(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    n = len(train_pages)
    total = cfg["epochs"] * n
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg["warmup_steps"], total))
    epoch, pos, step, best, history, trained_s = 0, 0, 0, float("inf"), [], 0.0
    resumed_losses: list[float] = []
    losses: list[float] = []
    ck = read_checkpoint(out / "last.pt")
    if ck is not None:
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"]); set_rng_state(ck["rng"])
        epoch, pos, step, best = ck["epoch"], ck["step_in_epoch"], ck["global_step"], ck["best"]
        history, trained_s = ck["history"], ck["elapsed"]
        resumed_losses = list(ck.get("epoch_losses", []))
        log(f"resumed from {out / 'last.pt'}: epoch {epoch + 1}, page {pos}/{n}, step {step}")

    def save() -> None:
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": rng_state(), "epoch": epoch, "step_in_epoch": pos, "global_step": step, "best": best,
                     "history": history, "elapsed": trained_s, "epoch_losses": losses, "alphabet": None, "task": "segment",
                     "config": cfg, "model_config": mcfg},
                    out / "last.pt")

    t_start = time.time()
    model.train()
    stopped = False
    while epoch < cfg["epochs"] and not stopped:
        order = np.random.default_rng([cfg["seed"], epoch]).permutation(n)
        bar = tqdm(total=n, initial=pos, desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False,
                   disable=not sys.stderr.isatty())
        losses, resumed_losses = resumed_losses, []
        t0 = time.time()
        while pos < n:
            i = int(order[pos])
            gray, page = train_pages[i]
            rng = np.random.default_rng([cfg["seed"], epoch, i]) if cfg["augment"] else None
            x, t = sample(gray, page, cfg["long_side"], rng)
            loss = loss_fn(model(torch.from_numpy(x)[None, None]), torch.from_numpy(t)[None])
            optimizer_step(loss, opt, model.parameters(), 5.0, after_step=sched.step)
            losses.append(loss.item()); pos += 1; step += 1
            bar.update(1); bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            trained_s += time.time() - t0; t0 = time.time()
            over = cfg["time_limit"] and time.time() - t_start > cfg["time_limit"] * 60
            if step % cfg["checkpoint_steps"] == 0 or over or (cfg["max_steps"] and step >= cfg["max_steps"]):
                save()
                if over or (cfg["max_steps"] and step >= cfg["max_steps"]):
                    stopped = True
                    break
        bar.close()
        if stopped:
            log(f"stopped at epoch {epoch + 1}, page {pos}/{n} (checkpoint {out / 'last.pt'}); same command resumes")
            break
        row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
               "lr": opt.param_groups[0]["lr"], "trained_s": round(trained_s, 1)}
        if val_pages:
            row.update(validate(model, val_pages, cfg["long_side"]))
        score = row.get("val_loss", row["train_loss"] or float("inf"))
        if score < best:
            best = score
            save_segmenter(model, {**mcfg, "trained": {k: row[k] for k in row}}, out / "best")
            row["best"] = True
        history.append(row)
        (out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
        log(json.dumps(row))
        epoch += 1; pos = 0; losses = []
        save()
    return {"epoch": epoch, "step": step, "best": best, "history": history, "stopped": stopped}


def read_config(path: str) -> dict:
    data = read_yaml_mapping(path)
    task = data.pop("task", "segment")
    if task != "segment":
        raise ConfigError(f"{path}: task is {task!r}, not a segmenter config")
    return data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config")
    for k, v in DEFAULTS.items():
        if isinstance(v, bool):
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, action=argparse.BooleanOptionalAction, default=None)
        elif k == "widths":
            p.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], default=None)
        else:
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, default=None,
                           type=type(v) if v is not None else str)


def config_from_args(a: argparse.Namespace) -> dict:
    cfg = read_config(a.config) if a.config else {}
    cfg.update({k: getattr(a, k) for k in DEFAULTS if getattr(a, k, None) is not None})
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="inkpack train --task segment", description=__doc__.splitlines()[0])
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        train(config_from_args(a))
    except InkpackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
