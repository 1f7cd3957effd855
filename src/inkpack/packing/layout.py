"""Example packing (seed 000): tile variable-size examples into a few canvases instead of padding.

Padding a batch to its largest example makes a 2D recurrence (MDLSTM) spend most of its time
on zeros when sizes vary (word boxes: a 4x range in height and 10x in width). Packing puts the
examples side by side on shelves of a canvas, separated by zero rows/columns; the model masks
those separators (state zeroed) so no information crosses an example boundary, and the
canvas has few wasted cells.

Geometry: greedy shelf packing. Examples go tallest first, each to the first shelf (a row
of a canvas) with room, stacked under a column of that shelf when short and narrow enough,
else at the shelf's right end; otherwise it opens a new shelf. The shelves are dealt to one
or more canvases of equal size (a batch of canvases), balancing their heights. The canvas
width and count are chosen automatically: the best fill (real cells / canvas cells) over
widths from the widest example to a two-shelf canvas, or, given a ``cost(n, Hc, Wc)``
estimate (a model's time for a canvas batch), the least cost.

``align`` keeps every example at a multiple of a stride (and its footprint a multiple of it),
so that a non-overlapping block operation (2x2 blocks, stride-(2,4) convolutions) on the
canvas equals the operation on each example alone; ``sep`` is the separator width in cells.

Lines of one fixed height ``H`` (the CNN-DBLSTM models): ``sep=(0, s)`` with
``max_canvas_height=H`` puts every shelf on a canvas of its own (a batch of ``H``-high
canvases; one-dimensional first-fit-decreasing over the searched widths), which needs no
separator rows; :func:`inkpack.packing.cnn.pack_options` gives those options.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from inkpack.batching import Batch, attach_labels
from inkpack.errors import InkpackError


def _up(v: int, a: int) -> int:
    return -(-v // a) * a


@dataclass
class PackLayout:
    """Where each example lies: canvas index, top-left ``(y, x)`` and true size ``(h, w)``."""

    canvas: list[int]
    y: list[int]
    x: list[int]
    h: list[int]
    w: list[int]
    n_canvas: int
    height: int
    width: int
    sep: tuple[int, int] = (1, 1)
    align: tuple[int, int] = (1, 1)
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.h)

    @property
    def real_cells(self) -> int:
        return sum(h * w for h, w in zip(self.h, self.w))

    @property
    def canvas_cells(self) -> int:
        return self.n_canvas * self.height * self.width

    @property
    def fill_ratio(self) -> float:
        return self.real_cells / max(1, self.canvas_cells)

    def mask(self, scale_y: int = 1, scale_x: int = 1, device: torch.device | str | None = None,
             sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        """BoolTensor ``[n_canvas, Hc/sy, Wc/sx]``: True on real cells (of a downsampled map)."""
        hc, wc = -(-self.height // scale_y), -(-self.width // scale_x)
        m = torch.zeros(self.n_canvas, hc, wc, dtype=torch.bool, device=device)
        for i, (y0, x0, hh, ww) in enumerate(self._boxes(scale_y, scale_x, sizes)):
            m[self.canvas[i], y0 : y0 + hh, x0 : x0 + ww] = True
        return m

    def _boxes(self, sy: int, sx: int, sizes=None) -> list[tuple[int, int, int, int]]:
        if self.align[0] % sy or self.align[1] % sx:
            raise InkpackError(f"packing: scale {sy}x{sx} does not divide the alignment {self.align}")
        out = []
        for i in range(len(self)):
            hh, ww = sizes[i] if sizes is not None else (-(-self.h[i] // sy), -(-self.w[i] // sx))
            out.append((self.y[i] // sy, self.x[i] // sx, hh, ww))
        return out

    def cut(self, fmap: torch.Tensor, scale_y: int = 1, scale_x: int = 1,
            sizes: Sequence[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        """Cut each example ``[C, h', w']`` out of a map ``[n_canvas, C, H', W']`` (views).

        The map may be downsampled by ``(scale_y, scale_x)``; an example then spans
        ``ceil(h / scale_y) x ceil(w / scale_x)`` cells unless ``sizes`` gives them.
        """
        return [fmap[self.canvas[i], :, y0 : y0 + hh, x0 : x0 + ww]
                for i, (y0, x0, hh, ww) in enumerate(self._boxes(scale_y, scale_x, sizes))]

    def repack(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, PackLayout]:
        """Pack per-example maps ``[C, h, w]`` again (new sizes) with this layout's options."""
        return pack_tensors(maps, sep=self.sep, align=self.align, **self.options)

    def place(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Write maps of exactly this layout's sizes into a zero canvas ``[n_canvas, C, Hc, Wc]``."""
        c = maps[0].shape[0]
        out = maps[0].new_zeros(self.n_canvas, c, self.height, self.width)
        for i, m in enumerate(maps):
            if tuple(m.shape[-2:]) != (self.h[i], self.w[i]):
                raise InkpackError(f"packing: example {i} is {tuple(m.shape[-2:])}, layout says "
                                   f"{(self.h[i], self.w[i])}")
            out[self.canvas[i], :, self.y[i] : self.y[i] + self.h[i], self.x[i] : self.x[i] + self.w[i]] = m
        return out


def _shelves(fh: list[int], fw: list[int], width: int, sep: tuple[int, int],
             align: tuple[int, int], order: list[int]) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Greedy shelves; returns shelf heights and per example (shelf, dy, x).

    Examples go tallest first (ties: widest first) to the first shelf with room: stacked
    below an example of a column of that shelf when narrower and short enough, else appended
    at the shelf's right end; otherwise they open a new shelf. Filling a shelf in height
    order keeps similar heights together; filling it with the widest example that fits
    (the other classic rule) gave a worse fill here (0.76 vs 0.86 for words).
    """
    (sy, sx), (ay, ax) = sep, align
    heights: list[int] = []
    ends: list[int] = []  # next free x of each shelf
    cols: list[list[list[int]]] = []  # per shelf: [x, column width, next free dy]
    room: list[int] = []  # most free height below any column of the shelf (a quick skip)
    where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(fh)
    for i in order:
        h, w = fh[i], fw[i]
        placed = False
        for s in range(len(heights)):
            if h <= room[s]:
                for col in cols[s]:
                    if w <= col[1] and col[2] + h <= heights[s]:
                        where[i] = (s, col[2], col[0])
                        col[2] = _up(col[2] + h + sy, ay)
                        room[s] = heights[s] - min(c[2] for c in cols[s])
                        placed = True
                        break
                if placed:
                    break
            if ends[s] + w <= width:
                where[i] = (s, 0, ends[s])
                cols[s].append([ends[s], w, _up(h + sy, ay)])
                room[s] = heights[s] - min(c[2] for c in cols[s])
                ends[s] = _up(ends[s] + w + sx, ax)
                placed = True
                break
        if not placed:
            where[i] = (len(heights), 0, 0)
            heights.append(h)
            ends.append(_up(w + sx, ax))
            cols.append([[0, w, _up(h + sy, ay)]])
            room.append(h - cols[-1][0][2])
    return heights, where


def _lpt(steps: list[int], shelf_h: list[int], k: int) -> tuple[list[list[int]], int]:
    """Deal the shelves (tallest first) to ``k`` canvases, each to the lowest stack so far.

    Canvases of one batch share one height, so balancing their stacks (a tall shelf with
    short ones) wastes less than cutting the sorted stack into runs. Returns the groups and
    the tallest canvas; that is at most ``sum(steps) / k`` plus one shelf (the last shelf
    of the tallest canvas went onto a stack no higher than the mean).
    """
    heap = [(0, c) for c in range(k)]
    groups: list[list[int]] = [[] for _ in range(k)]
    for s in sorted(range(len(steps)), key=lambda s: (-steps[s], s)):
        y, c = heapq.heappop(heap)
        groups[c].append(s)
        heapq.heappush(heap, (y + steps[s], c))
    groups = [g for g in groups if g]
    hc = max(sum(steps[s] for s in g[:-1]) + shelf_h[g[-1]] for g in groups)
    return groups, hc


def pack_layout(
    heights: Sequence[int],
    widths: Sequence[int],
    *,
    sep: tuple[int, int] = (1, 1),
    align: tuple[int, int] = (1, 1),
    canvas_width: int | None = None,
    max_canvas_height: int | None = None,
    cost: Callable[[int, int, int], float] | None = None,
    n_widths: int = 12,
) -> PackLayout:
    """Compute a packing of ``h x w`` boxes; see the module docstring.

    Canvas widths tried: ``canvas_width`` if given, else ``n_widths`` widths from the
    widest example up to a canvas holding everything on two shelves (geometric), then
    ``n_widths / 2`` more between the neighbours of the best. Per width the shelves make
    one canvas, or are dealt to ``ceil(stack / max_canvas_height)`` canvases of about equal
    height (a batch of same-size canvases; at most ``max_canvas_height`` plus one shelf).
    Kept: the best fill, or with ``cost(n_canvas, Hc, Wc)`` (e.g. a model's time estimate)
    the least cost, where canvas counts from 1 to one shelf per canvas are tried.
    """
    n = len(heights)
    if n == 0 or len(widths) != n:
        raise InkpackError("packing: need a non-empty batch with one width per height")
    if min(heights) < 1 or min(widths) < 1:
        raise InkpackError(f"packing: example sizes must be >= 1, got min h {min(heights)}, "
                           f"min w {min(widths)}")
    sep, align = (int(sep[0]), int(sep[1])), (int(align[0]), int(align[1]))
    fh = [_up(int(h), align[0]) for h in heights]
    fw = [_up(int(w), align[1]) for w in widths]
    area = sum(int(h) * int(w) for h, w in zip(heights, widths))
    order = sorted(range(n), key=lambda i: (-fh[i], -fw[i], i))

    def best_for(wc: int) -> tuple:
        """(key, shelves, placements, canvas count) of the best split at canvas width wc."""
        shelf_h, where = _shelves(fh, fw, wc, sep, align, order)
        steps = [_up(h + sep[0], align[0]) for h in shelf_h]
        if cost is not None:  # the fewest canvases that hold m shelves each, m = 1, 2, ...
            counts = sorted({-(-len(steps) // m) for m in range(1, len(steps) + 1)})
        elif max_canvas_height is not None:
            counts = [max(1, -(-sum(steps) // max_canvas_height))]
        else:
            counts = [1]
        wc_used = max(w[2] + fw[i] for i, w in enumerate(where))
        best = None
        for k in counts:
            groups, hc = _lpt(steps, shelf_h, k)
            n_c = len(groups)
            key = cost(n_c, hc, wc_used) if cost is not None else -area / (n_c * hc * wc_used)
            if best is None or key < best[0]:
                best = (key, shelf_h, where, k)
        return best

    if canvas_width is not None:
        best = best_for(max(_up(canvas_width, align[1]), max(fw)))
    else:  # coarse geometric grid of widths, then a finer one around the best
        lo = max(fw)
        hi = max(lo, sum(_up(w + sep[1], align[1]) for w in fw) // 2)
        grid = sorted({_up(int(lo * (hi / lo) ** (k / max(1, n_widths - 1))), align[1])
                       for k in range(n_widths)})
        tried = {wc: best_for(wc) for wc in grid}
        j = min(range(len(grid)), key=lambda i: tried[grid[i]][0])
        a, b = grid[max(0, j - 1)], grid[min(len(grid) - 1, j + 1)]
        for k in range(1, n_widths // 2 + 1):
            wc = _up(a + (b - a) * k // (n_widths // 2 + 1), align[1])
            if wc not in tried:
                tried[wc] = best_for(wc)
        best = min(tried.values(), key=lambda t: t[0])
    _, shelf_h, where, k = best
    groups, _ = _lpt([_up(h + sep[0], align[0]) for h in shelf_h], shelf_h, k)
    lay = _stack(shelf_h, where, groups, heights, widths, fw, sep, align)
    lay.options = {"canvas_width": canvas_width, "max_canvas_height": max_canvas_height,
                   "cost": cost, "n_widths": n_widths}
    return lay


def _stack(shelf_h, where, groups, heights, widths, fw, sep, align) -> PackLayout:
    (sy, _), (ay, _) = sep, align
    canvas_of, top = [0] * len(shelf_h), [0] * len(shelf_h)
    hc = 0
    for c, g in enumerate(groups):
        y = 0
        for s in g:
            canvas_of[s], top[s] = c, y
            hc = max(hc, y + shelf_h[s])
            y += _up(shelf_h[s] + sy, ay)
    n = len(heights)
    canvas = [canvas_of[where[i][0]] for i in range(n)]
    ys = [top[where[i][0]] + where[i][1] for i in range(n)]
    xs = [where[i][2] for i in range(n)]
    wc = max(xs[i] + fw[i] for i in range(n))
    return PackLayout(canvas, ys, xs, [int(h) for h in heights], [int(w) for w in widths],
                      len(groups), hc, wc, tuple(sep), tuple(align))


def pack_tensors(maps: Sequence[torch.Tensor], **options) -> tuple[torch.Tensor, PackLayout]:
    """Pack ``[C, h, w]`` tensors into canvases ``[n_canvas, C, Hc, Wc]`` (zero elsewhere)."""
    if not maps:
        raise InkpackError("packing: empty batch")
    lay = pack_layout([m.shape[-2] for m in maps], [m.shape[-1] for m in maps], **options)
    return lay.place(maps), lay


def pack(
    images: Sequence[torch.Tensor],
    labels: Sequence[Sequence[int]] | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    **options,
) -> Batch:
    """Like :func:`inkpack.batching.pad_collate`, but tiles the images into canvases.

    ``images`` of the returned batch is ``[n_canvas, C, Hc, Wc]`` and ``packing`` the
    :class:`PackLayout`; ``heights``/``widths`` stay per example.
    """
    canvases, lay = pack_tensors(images, **options)
    batch = Batch(images=canvases, heights=torch.tensor(lay.h, dtype=torch.long),
                  widths=torch.tensor(lay.w, dtype=torch.long), packing=lay)
    return attach_labels(batch, labels, texts, ids)


def pack_batch(batch: Batch, **options) -> Batch:
    """Re-pack a padded :class:`Batch` (targets, texts and ids travel along)."""
    if batch.packing is not None:
        return batch
    ims = [batch.images[i, :, : int(batch.heights[i]), : int(batch.widths[i])] for i in range(len(batch))]
    out = pack(ims, texts=batch.texts, ids=batch.ids, **options)
    out.targets, out.target_lengths = batch.targets, batch.target_lengths
    return out


# Moving examples between layouts (used by the packed forward passes and their re-packing).

def example_boxes(lay: PackLayout, scale: tuple[int, int], hs: list[int], ws: list[int]) -> list[tuple]:
    """(canvas, y, x, h, w) of every example in a map downsampled by ``scale`` from ``lay``."""
    sy, sx = scale
    return [(lay.canvas[i], lay.y[i] // sy, lay.x[i] // sx, hs[i], ws[i]) for i in range(len(hs))]


def _move(dst: torch.Tensor, dst_boxes: list[tuple], src: torch.Tensor, src_boxes: list[tuple]) -> None:
    for (c1, y1, x1, h, w), (c2, y2, x2, _, _) in zip(src_boxes, dst_boxes):
        dst[c2, :, y2 : y2 + h, x2 : x2 + w].copy_(src[c1, :, y1 : y1 + h, x1 : x1 + w])


def _zeros_like_layout(x: torch.Tensor, n: int, H: int, W: int) -> torch.Tensor:
    """Zero ``[n, C, H, W]`` canvas in the memory format of ``x`` (the MDLSTM's output is
    channels-last; copying boxes between equal formats copies contiguous runs)."""
    c = x.shape[1]
    if x.dim() == 4 and x.stride(1) == 1 and c > 1:
        return x.new_zeros(n, H, W, c).permute(0, 3, 1, 2)
    return x.new_zeros(n, c, H, W)


class _Transfer(torch.autograd.Function):
    """Box copies between two canvases; one autograd node (the backward copies boxes back),
    instead of a chain of slice assignments that would each clone the whole gradient."""

    @staticmethod
    def forward(ctx, x, src_boxes, dst_boxes, dst_shape):
        ctx.src_boxes, ctx.dst_boxes, ctx.src_shape = src_boxes, dst_boxes, x.shape
        out = _zeros_like_layout(x, *dst_shape)
        _move(out, dst_boxes, x, src_boxes)
        return out

    @staticmethod
    def backward(ctx, g):
        n, _, H, W = ctx.src_shape
        gx = _zeros_like_layout(g, n, H, W)
        _move(gx, ctx.src_boxes, g, ctx.dst_boxes)
        return gx, None, None, None


def transfer(x: torch.Tensor, src: PackLayout, scale: tuple[int, int], hs: torch.Tensor,
             ws: torch.Tensor, dst: PackLayout) -> torch.Tensor:
    """Move every example's ``hs x ws`` cells from map ``x`` (of layout ``src`` downsampled by
    ``scale``) into a zero canvas of layout ``dst`` (same sizes, full resolution)."""
    h, w = hs.tolist(), ws.tolist()
    return _Transfer.apply(x, example_boxes(src, scale, h, w), example_boxes(dst, (1, 1), h, w),
                           (dst.n_canvas, dst.height, dst.width))


def repack(batch: Batch, options: dict) -> Batch:
    """``batch`` (packed) moved to a new layout built with packer ``options``, labels kept."""
    lay = batch.packing
    new = pack_layout(lay.h, lay.w, **options)
    images = transfer(batch.images, lay, (1, 1), batch.heights.cpu(), batch.widths.cpu(), new).contiguous()
    return Batch(images=images, heights=batch.heights, widths=batch.widths, targets=batch.targets,
                 target_lengths=batch.target_lengths, texts=batch.texts, ids=batch.ids, packing=new)
