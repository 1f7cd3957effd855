"""Packed forward pass of the ``mdlstm`` model: every stage runs on canvases, not padded batches.

(The CNN-DBLSTM line models have their own packed path, :mod:`inkpack.packing.cnn`; each
architecture names its own in its registry entry, and :mod:`inkpack.packing` dispatches.)

The model (:mod:`inkpack.models.mdlstm`) is a list of stages, ``2x2 blocks -> MDLSTM -> conv
2x4 -> MDLSTM -> conv 2x4 -> MDLSTM``, then a head (FC, collapse); this module runs the
model's own stage modules on canvases (no hook in the model is needed). Between stages the
examples are cut out and re-packed (the seed's way), each stage with its own layout chosen
for that stage's cost: a layout built for one resolution is wasteful at the next
(separators would vanish under a stride, shelves change shape).

Exactness (``tests/packing/test_mdlstm.py``): an example's numbers are those of running it alone:

* the input canvas is aligned to the 2x2 block and has 2-pixel separators, so blocking the
  canvas equals blocking each example, with 1-cell separators after it;
* each MDLSTM gets the mask of real cells; masked cells carry zero state, so nothing
  crosses a separator, and their output is zero, as the padding of an example run alone;
* before a 2x4 convolution (kernel = stride) each example is placed at a multiple of
  (2, 4) with (2, 4) separators, so no window holds two examples and the output again has
  1-cell separators; cells a window adds beyond an example are zero, as in the alone run;
* the final map is cut back into examples, collapsed over the height, and padded only
  along time for CTC.

Cut and re-pack between stages is one autograd node per stage (box copies forward and
backward), not one slice assignment per example.

Canvas shape: :class:`inkpack.nn.mdlstm.MDLSTM` scans a skewed map, which costs about
``n * (H + 1) * (H + W - 1)`` cells plus a per-step overhead over ``H + W - 1`` steps; a tall
canvas wastes its skew triangles, a very wide one has many steps. ``mdlstm_cost`` is that
estimate, and the packer keeps the canvas width and count that minimise it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from inkpack.batching import Batch
from inkpack.errors import InkpackError
from inkpack.packing.layout import PackLayout, example_boxes, pack_layout, repack, transfer


def step_overhead_cells(hidden: int) -> float:
    """Per-step overhead of a 4-direction MDLSTM layer, in cells: CPU time of forward +
    backward fitted as ``a * steps + b * cells`` on the reference CPU (one thread) gave
    a / b of about 108 for hidden 2, 56 for 10 and 12 for 50."""
    return 130.0 / (1.0 + hidden / 7.5)


def mdlstm_cost(hidden: int, scale: tuple[int, int] = (1, 1)) -> Callable[[int, int, int], float]:
    """Estimated time (in cell units) of an MDLSTM on ``n`` canvases of ``Hc x Wc`` cells of
    a layout that the next operation downsamples by ``scale``."""
    r = step_overhead_cells(hidden)
    sy, sx = scale

    def cost(n: int, hc: int, wc: int) -> float:
        h, w = -(-hc // sy), -(-wc // sx)
        return n * (h + 1) * (h + w - 1) + r * (h + w - 1)

    return cost


def _ceil_div(v: torch.Tensor, d: int) -> torch.Tensor:
    return torch.div(v + d - 1, d, rounding_mode="floor")


def collapse(x: torch.Tensor, lay: PackLayout, scale: tuple[int, int], hs: torch.Tensor,
             ws: torch.Tensor) -> torch.Tensor:
    """Sum each example's map over its real rows: ``[T, B, C]``, zero beyond each width."""
    boxes = example_boxes(lay, scale, hs.tolist(), ws.tolist())
    cols = [x[c, :, y : y + h, q : q + w].sum(1).t() for c, y, q, h, w in boxes]
    return torch.nn.utils.rnn.pad_sequence(cols)


def _stride(stage) -> tuple[int, int] | None:
    """Kernel = stride of a block/conv stage of the mdlstm model, None for an MDLSTM stage."""
    from inkpack.models.mdlstm import ConvTanh, LSTMStage, SpaceToDepth

    if isinstance(stage, SpaceToDepth):
        return stage.bh, stage.bw
    if isinstance(stage, ConvTanh):
        return stage.kh, stage.kw
    if isinstance(stage, LSTMStage):
        return None
    raise InkpackError(f"packed_forward: unsupported stage {type(stage).__name__} (mdlstm models only)")


def _options_before(model, k: int) -> dict:
    """Packer options for the layout feeding strided stage ``k``: aligned to its stride,
    separators of one stride (one cell after it), shaped for the MDLSTM that follows."""
    stride = _stride(model.stages[k])
    nxt = next((st for st in model.stages[k + 1 :] if _stride(st) is None), None)
    cost = mdlstm_cost(nxt.lstm.hidden, stride) if nxt is not None else None
    # layouts inside the forward pass are on the step's critical path: a coarser width search
    return {"sep": stride, "align": stride, "cost": cost, "n_widths": 12 if k == 0 else 8}


def pack_options(model) -> dict:
    """Packer options for the input canvas of ``model`` (what :func:`packed_forward` expects)."""
    if not hasattr(model, "stages") or not model.stages or _stride(model.stages[0]) is None:
        raise InkpackError("packed_forward: the model must start with a block stage (architecture mdlstm)")
    return _options_before(model, 0)


def prepare(model, batch: Batch) -> Batch:
    """Return ``batch`` re-packed for ``model`` unless its layout already suits it."""
    lay = batch.packing
    if lay is None:
        raise InkpackError("packed_forward: the batch is not packed (batch.packing is None)")
    opts = pack_options(model)
    stride = opts["align"]
    if all(a % b == 0 for a, b in zip(lay.align, stride)) and all(s >= b for s, b in zip(lay.sep, stride)):
        return batch
    return repack(batch, opts)


def packed_forward(model, batch: Batch, stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``model`` (architecture ``mdlstm``) on a packed batch -> ``(logits [T, B, K], out_lengths)``.

    Runs ``model.stages`` on canvases: before each block/conv stage the examples are moved
    to a layout aligned to its stride (the input layout serves the first one); each MDLSTM
    stage gets the mask of the real cells; the head's collapse runs per example.
    ``stats``, when given, receives ``layout_s``: the CPU seconds spent computing layouts.
    """
    batch = prepare(model, batch)
    lay, scale = batch.packing, (1, 1)
    hs, ws = batch.heights.cpu(), batch.widths.cpu()
    x, t_layout = batch.images, 0.0
    for k, stage in enumerate(model.stages):
        stride = _stride(stage)
        if stride is None:
            sizes = list(zip(hs.tolist(), ws.tolist()))
            x = stage(x, None, None, mask=lay.mask(*scale, device=x.device, sizes=sizes))
            continue
        if k > 0:  # cut the examples out and re-pack them aligned to this stride
            t0 = time.process_time()
            new = pack_layout(hs.tolist(), ws.tolist(), **_options_before(model, k))
            t_layout += time.process_time() - t0
            x, lay, scale = transfer(x, lay, scale, hs, ws, new), new, (1, 1)
        x = stage(x, None, None)
        scale = (scale[0] * stride[0], scale[1] * stride[1])
        hs, ws = _ceil_div(hs, stride[0]), _ceil_div(ws, stride[1])
    s = collapse(x, lay, scale, hs, ws)  # [T, B, C]: sum over each example's real rows
    head = model.head
    logits = head.fc(s) + hs.to(device=s.device, dtype=s.dtype)[None, :, None] * head.bias
    if stats is not None:
        stats["layout_s"] = stats.get("layout_s", 0.0) + t_layout
    return logits, ws.to(batch.images.device)
