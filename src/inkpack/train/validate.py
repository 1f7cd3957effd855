"""Validation of a line recognizer: greedy CER/WER and CTC loss over a line set."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.data.lines import LineBatcher, LineSet
from inkpack.metrics import ErrorCounts
from inkpack.train.ctc import ctc_loss
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
