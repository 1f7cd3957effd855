"""Packed forward pass of the CNN-DBLSTM line models (``vgg-dblstm``, ``darknet-dblstm``).

All lines of these models have the model's fixed height, so packing is one-dimensional:
the lines of a batch are dealt to shelves (first fit, widest first, over a search of shelf
widths for the best fill, :func:`inkpack.packing.layout.pack_layout`), and every shelf is one
canvas of the model's height: a batch ``[n_shelves, C, H, Wc]``. Using the batch dimension
for the shelves needs no separator rows and no height alignment (a canvas's top and bottom
are the image border, as for a line alone), so nothing is lost vertically.

Exactness (``tests/packing/test_cnn.py``): each line's logits are those of the line alone:

* lines start at multiples of the width factor (the product of the pooling widths), so a
  pooling window never holds two lines, and a line's cells at every level start at a whole
  cell;
* lines are ``sep`` columns apart, ``sep = max(padding * factor)`` over the convolutions
  (``factor``: the width reduction before that convolution), so a kernel centred on a line's
  cell never reaches its neighbour at any level;
* before each convolution the cells off the lines (separators and each line's cells beyond
  its true width) are set to zero: a conv, BatchNorm shift or bias made them non-zero, and
  alone those cells are the conv's zero padding;
* before each max-pooling they are set to ``-inf``: alone, a ``ceil_mode`` window that runs
  past the line's end ignores the missing cells (LeakyReLU outputs can be negative, so
  zeros would win the max), and the line keeps exactly ``ceil(w / pool)`` columns;
  (masks that cannot touch a line's cells are skipped: before 1x1 convs and 1-wide pools);
* the CNN output's frames of each line are gathered (``ceil(w / width_factor)`` of them),
  projected, and the DBLSTM runs on them with their exact lengths: by default each
  direction on the padded batch, the backward one on each line reversed within its length
  (:func:`inkpack.nn.blstm.masked_bilstm`, as ``model.sequence`` does; 1.4-1.7x faster on
  CPU than ``pack_padded_sequence``, which ``padded_lstm=False`` uses).

Not exact: BatchNorm in train mode (its statistics cover the canvas, separators included,
as the padded path's cover its padding) and dropout (other random masks); use ``norm: none``
or eval mode for comparisons.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from inkpack.batching import Batch
from inkpack.errors import InkpackError
from inkpack.nn.conv import pool_width as _pool_width
from inkpack.nn.conv import run_masked
from inkpack.packing.layout import PackLayout, repack


def _plan(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """(kind, module, width factor before it) for the conv stack; rejects what packing
    cannot reproduce (strided or dilated convs, pools whose stride is not their kernel)."""
    plan, f = [], 1
    for m in model.cnn.body:
        if isinstance(m, nn.Conv2d):
            if tuple(m.stride) != (1, 1) or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" \
                    or m.padding[1] != m.kernel_size[1] // 2:
                raise InkpackError("packed CNN: only stride-1, undilated, 'same' zero-padded convs are supported")
            plan.append(("conv", m, f))
        elif isinstance(m, nn.MaxPool2d):
            k, s = nn.modules.utils._pair(m.kernel_size), nn.modules.utils._pair(m.stride)
            if k != s or nn.modules.utils._pair(m.padding) != (0, 0) or not m.ceil_mode:
                raise InkpackError("packed CNN: max-pools must have stride = kernel, no padding, ceil_mode")
            plan.append(("pool", m, f))
            f *= _pool_width(m)
        elif isinstance(m, (nn.BatchNorm2d, nn.Identity, nn.LeakyReLU, nn.ReLU)):
            plan.append(("map", m, f))  # cellwise: maps zeros to constants at most
        else:
            raise InkpackError(f"packed CNN: unsupported layer {type(m).__name__} in the conv stack")
    return plan


def separator(model: nn.Module) -> int:
    """Columns between two lines so that no convolution at any level sees both."""
    return max([m.padding[1] * f for kind, m, f in _plan(model) if kind == "conv"] + [1])


def pack_options(model: nn.Module) -> dict:
    """Packer options for a CNN-DBLSTM input: one shelf per canvas of the model's height,
    lines aligned to the width factor, ``separator(model)`` columns apart."""
    return {"sep": (0, separator(model)), "align": (1, model.width_factor),
            "max_canvas_height": int(model.height)}


def _suits(model: nn.Module, lay: PackLayout) -> bool:
    return (lay.height == model.height and not any(lay.y) and lay.align[1] % model.width_factor == 0
            and lay.sep[1] >= separator(model))


def prepare(model: nn.Module, batch: Batch) -> Batch:
    """Return ``batch`` re-packed for ``model`` unless its layout already suits it."""
    lay = batch.packing
    if lay is None:
        raise InkpackError("packed_forward: the batch is not packed (batch.packing is None)")
    bad = [i for i, h in enumerate(lay.h) if h != model.height]
    if bad:
        raise InkpackError(f"packed CNN: model expects lines of height {model.height}, example {bad[0]} "
                           f"is {lay.h[bad[0]]} high")
    return batch if _suits(model, lay) else repack(batch, pack_options(model))


def column_mask(lay: PackLayout, factor: int, width: int, device=None) -> torch.Tensor:
    """BoolTensor ``[n_canvas, 1, 1, width]``: True on the columns of real cells of a map whose
    width is reduced ``factor`` times (a line spans ``ceil(w / factor)`` of them; all rows of a
    line are real, as every line has the canvas's height)."""
    x0 = torch.tensor(lay.x, device=device) // factor
    x1 = x0 + (torch.tensor(lay.w, device=device) + factor - 1) // factor
    cols = torch.arange(width, device=device)
    per_line = (cols[None] >= x0[:, None]) & (cols[None] < x1[:, None])  # [B, width]
    m = torch.zeros(lay.n_canvas, width, device=device)
    m.index_add_(0, torch.tensor(lay.canvas, device=device), per_line.float())
    return (m > 0)[:, None, None, :]


def cnn_canvas(model: nn.Module, images: torch.Tensor, lay: PackLayout, remask: bool = True) -> torch.Tensor:
    """The conv stack on canvases, off-line cells zeroed before each conv and ``-inf`` before
    each pool (:func:`inkpack.nn.conv.run_masked`, the same walk as a padded batch's).
    ``remask=False`` runs it plainly (to show that the masks are needed).

    Masks that cannot change a line's cells are skipped: before a conv without width padding
    (1x1) and before a pool one column wide. A ``-inf`` left by a pool is always zeroed before
    the next layer (``-inf`` times a weight would make NaN gradients)."""
    _plan(model)  # refuse what packing cannot reproduce
    x = images.contiguous(memory_format=torch.channels_last)
    if not remask:
        return model.cnn.body(x)
    return run_masked(model.cnn.body, x, lambda f, x: ~column_mask(lay, f, x.shape[-1], device=x.device))


def gather_frames(fmap: torch.Tensor, lay: PackLayout, factor: int, lengths: torch.Tensor) -> torch.Tensor:
    """Each line's frames of a CNN output ``[n, C, h, W']`` as a padded ``[T, B, C * h]``
    (frames past a line's length repeat its last frame; the DBLSTM never reads them)."""
    n, c, h, w = fmap.shape
    cols = fmap.permute(0, 3, 1, 2).reshape(n * w, c * h)  # per frame (channel, row), as in features()
    dev = fmap.device
    start = torch.tensor(lay.canvas, device=dev) * w + torch.tensor(lay.x, device=dev) // factor
    lengths = lengths.to(dev)
    t = torch.arange(int(lengths.max()), device=dev)
    idx = start[None, :] + torch.minimum(t[:, None], lengths[None, :] - 1)
    return cols[idx]


def packed_forward(model: nn.Module, batch: Batch, stats: dict | None = None,
                   remask: bool = True, padded_lstm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CNN-DBLSTM ``model`` on a packed batch -> ``(logits [T, B, K], out_lengths)``, as
    ``model(images, heights, widths)`` gives for the same lines padded."""
    t0 = time.process_time()
    batch = prepare(model, batch)
    if stats is not None:
        stats["layout_s"] = stats.get("layout_s", 0.0) + time.process_time() - t0
    lay = batch.packing
    fmap = cnn_canvas(model, batch.images, lay, remask=remask)
    lengths = model.output_lengths(batch.widths.cpu()).clamp(min=1)
    feats = model.proj(gather_frames(fmap, lay, model.width_factor, lengths))
    y = model.sequence(feats, lengths, packed=not padded_lstm)
    return model.fc(y), lengths.to(batch.images.device)
