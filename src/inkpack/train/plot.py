"""Learning-curve PNG written next to the checkpoints after every epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, out: str | Path) -> None:
    """Write ``fig`` to ``out`` through a temporary file (a reader never sees half a PNG)."""
    tmp = Path(out).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def plot_curves(history: list[dict], out: str | Path) -> None:
    if not history:
        return
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train CTC loss")
    if all("val_loss" in h for h in history):
        a1.plot(ep, [h["val_loss"] for h in history], "s-", label="val CTC loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss per line")
    a1.legend()
    a1.grid(alpha=0.3)
    minutes = [h["elapsed_s"] / 60 for h in history]
    a2.plot(minutes, [100 * h["val_cer"] for h in history], "o-", label="val CER")
    a2.plot(minutes, [100 * h["val_wer"] for h in history], "s-", label="val WER")
    a2.set_xlabel("training time (min)")
    a2.set_ylabel("%")
    a2.set_ylim(bottom=0)
    a2.legend()
    a2.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out)


def plot_ink_curves(history: list[dict], out: str | Path) -> None:
    """Loss against step, and the validation metrics (%) against training minutes."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    st = [h["step"] for h in history]
    minutes = [h["elapsed_s"] / 60 for h in history]
    for k in ("train_loss", "val_loss", "val_top1", "val_top5", "val_cer", "val_wer"):
        if all(k in h for h in history):
            ax, x, f = (a1, st, 1) if k.endswith("loss") else (a2, minutes, 100)
            ax.plot(x, [f * h[k] for h in history], "o-", label=k.replace("val_", "val "))
    a1.set(xlabel="step", ylabel="loss per sample")
    a2.set(xlabel="training time (min)", ylabel="%", ylim=(0, 100))
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:  # a run without validation has no metric curves
            a.legend()
    fig.tight_layout()
    _save(fig, out)


def plot_runs(runs: dict[str, list[dict]], out: str | Path, metric: str = "val_cer",
              by_epoch: bool = False, ymax: float | None = None) -> dict[str, list[tuple[float, float]]]:
    """Several runs' ``metric`` (a rate) against training minutes, or against epochs with
    ``by_epoch`` (for runs whose minutes mix different machine loads), in one PNG, e.g. runs side
    by side at equal time budgets: ``python -m inkpack.train.plot [--by-epoch] [--ymax PCT] OUT.png
    LABEL=history.json ...``; ``ymax`` cuts the y axis there to show where the runs end.
    Returns the plotted points (x, metric in %) of each run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    plotted = {}
    for label, history in runs.items():
        pts = [(h["epoch"] if by_epoch else h["elapsed_s"] / 60, 100 * h[metric])
               for h in history if h.get(metric) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, label=f"{label} (last {pts[-1][1]:.1f}%)")
            plotted[label] = pts
    ax.set_xlabel("epoch" if by_epoch else "training time (min)")
    if ymax is not None:
        ax.set_ylim(top=ymax)
    ax.set_ylabel(metric.replace("_", " ").replace("cer", "CER").replace("wer", "WER") + " %")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)
    return plotted


def main(argv: list[str] | None = None) -> int:
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m inkpack.train.plot [--by-epoch] [--ymax PCT] OUT.png LABEL=history.json [...]"
    by_epoch, ymax = False, None
    while args and args[0] in ("--by-epoch", "--ymax"):
        flag = args.pop(0)
        if flag == "--by-epoch":
            by_epoch = True
            continue
        value = args.pop(0) if args else ""
        try:
            ymax = float(value)
        except ValueError:
            print(f"--ymax: expected a percentage, not {value!r}", file=sys.stderr)
            return 2
    if len(args) < 2 or any("=" not in a for a in args[1:]):
        print(usage, file=sys.stderr)
        return 2
    runs = {}
    for a in args[1:]:
        label, _, path = a.partition("=")
        try:
            runs[label] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read a history ({e})", file=sys.stderr)
            return 1
    plot_runs(runs, args[0], by_epoch=by_epoch, ymax=ymax)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
