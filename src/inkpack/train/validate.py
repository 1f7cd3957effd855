"""What the line trainer checks about its data and state: which training lines a model can learn
from, validation (greedy CER/WER and CTC loss) and the RNG streams of a resumed run."""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.data.lines import LineBatcher, LineSet
from inkpack.errors import InkpackError, UnknownCharacterError
from inkpack.metrics import ErrorCounts
from inkpack.train.checkpoint import set_rng_state
from inkpack.train.ctc import ctc_loss, needed_frames
from inkpack.train.distributed import DistEnv, all_reduce_sums


@torch.no_grad()
def validate_lines(model: nn.Module, val_set: LineSet, alphabet: Alphabet, env: DistEnv,
                   batch_size: int = 32) -> dict:
    """CER/WER/loss; with N ranks each decodes every N-th batch and the counts are summed."""
    from inkpack.decode.greedy import greedy_decode

    model.eval()
    counts, loss_sum, n = ErrorCounts(), 0.0, 0
    vb = LineBatcher(val_set, alphabet, None, unknown_policy="skip")
    order = sorted(range(len(val_set)), key=lambda i: val_set.widths[i])
    for s in list(range(0, len(order), batch_size))[env.rank :: env.world_size]:
        batch = vb(order[s : s + batch_size]).to(env.device)
        logits, lengths = model(batch.images, batch.heights, batch.widths)
        logits = logits.float()
        loss_sum += float(ctc_loss(logits, lengths, batch)) * len(batch)
        n += len(batch)
        for labels, ref in zip(greedy_decode(logits.log_softmax(-1), lengths), batch.texts):
            counts.add(alphabet.decode(labels), ref)
    if env.distributed:
        tot = all_reduce_sums({**asdict(counts), "loss": loss_sum, "n": n}, env)
        counts = ErrorCounts(**{k: round(tot[k]) for k in asdict(counts)})
        loss_sum, n = tot["loss"], round(tot["n"])
    return {"val_cer": counts.cer, "val_wer": counts.wer, "val_loss": loss_sum / max(1, n)}


def trainable_lines(ts: LineSet, alphabet: Alphabet, model: nn.Module, skipped: list[str], source: str) -> LineSet:
    """The lines of ``ts`` the model can learn from: text the alphabet encodes and a label that
    fits the model's output frames; the others are appended to ``skipped`` with the reason."""
    keep: list[int] = []
    too_short = unknown = 0
    ratio = float(model.output_lengths(torch.tensor([1000]))[0]) / 1000.0
    for i, (img, text) in enumerate(zip(ts.images, ts.texts)):
        try:
            labels = alphabet.encode(text, policy="error")
        except UnknownCharacterError as e:
            skipped.append(f"{ts.ids[i]}: {e}")
            unknown += 1
            continue
        frames = math.floor(img.shape[1] * 0.85 * ratio)  # augmentation may shrink by 15%
        if needed_frames(labels) > frames:
            skipped.append(f"{ts.ids[i]}: label needs {needed_frames(labels)} frames, image gives {frames}")
            too_short += 1
            continue
        keep.append(i)
    if not keep:
        why = (f"all {len(ts.texts)} too short for the model's frames" if too_short == len(ts.texts)
               else f"{too_short} too short for the model's frames, {unknown} with characters outside "
               f"the alphabet")
        raise InkpackError(f"{source}: no usable lines ({why})")
    return LineSet([ts.images[i] for i in keep], [ts.texts[i] for i in keep], [ts.ids[i] for i in keep],
                   ts.skipped)


def restore_rng(ckpt: dict, env: DistEnv, seed: int, global_step: int) -> None:
    """The RNG streams of a resumed run: this rank's own when the checkpoint has them for the
    same number of processes, fresh per-rank streams under another number."""
    set_rng_state(ckpt["rng"])
    mine = ckpt.get("rng_ranks") or []
    if env.distributed and len(mine) == env.world_size:
        torch.set_rng_state(mine[env.rank]["torch"])
        if "cuda" in mine[env.rank] and env.device.type == "cuda":
            torch.cuda.set_rng_state(mine[env.rank]["cuda"], env.device)
    elif env.distributed:
        torch.manual_seed(seed + 1_000_003 * (env.rank + 1) + global_step)
    elif "cuda_rng" in ckpt and env.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"], env.device)
