"""Plain cell-by-cell MDLSTM: the ground truth that the wavefront layer is tested against.

Deliberately naive (one Python iteration per cell and direction) so that it is easy to
check by reading; the tests and ``benchmarks/mdlstm.py`` use it with the parameters of an
:class:`inkpack.nn.mdlstm.MDLSTM`. Conventions (shared with the fast layer):

* direction ``d`` scans from a corner; ``FLIPS[d]`` lists the axes (2 = height, 3 = width)
  flipped so that the scan always runs from the top-left of the flipped map;
* ``weight_ih[d]`` is ``[5h, C]``, ``weight_hh[d]`` is ``[5h, 2h]`` (columns ``:h`` act on the
  horizontal predecessor, ``h:`` on the vertical one), ``bias[d]`` is ``[5h]``;
* gate order along ``5h``: input i, forget f1 (horizontal), forget f2 (vertical), output o,
  candidate g; ``c = i*g + s*(f1*c1 + f2*c2)``, ``h = o*tanh(c)`` with ``s = forget_scale``;
* a masked-out cell has ``c = h = 0``.
"""

from __future__ import annotations

import torch

# Axes flipped per direction: top-left, bottom-right, top-right, bottom-left.
FLIPS: tuple[tuple[int, ...], ...] = ((), (2, 3), (3,), (2,))


def mdlstm_reference(
    x: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor,
    mask: torch.Tensor | None = None,
    forget_scale: float = 0.5,
    merge: str = "concat",
) -> torch.Tensor:
    """``x [B, C, H, W]`` -> ``[B, D*h, H, W]`` (concat) or ``[B, h, H, W]`` (sum)."""
    b, _, height, width = x.shape
    dirs, five_h, _ = weight_ih.shape
    hid = five_h // 5
    if mask is None:
        mask = torch.ones(b, height, width, dtype=torch.bool, device=x.device)
    outs = []
    for d in range(dirs):
        flip = FLIPS[d]
        xf = torch.flip(x, flip) if flip else x
        mf = torch.flip(mask, [a - 1 for a in flip]) if flip else mask
        zero = x.new_zeros(b, hid)
        hs: dict[tuple[int, int], torch.Tensor] = {}
        cs: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(height):
            for j in range(width):
                h1 = hs[i, j - 1] if j > 0 else zero
                c1 = cs[i, j - 1] if j > 0 else zero
                h2 = hs[i - 1, j] if i > 0 else zero
                c2 = cs[i - 1, j] if i > 0 else zero
                pre = (
                    xf[:, :, i, j] @ weight_ih[d].t()
                    + h1 @ weight_hh[d][:, :hid].t()
                    + h2 @ weight_hh[d][:, hid:].t()
                    + bias[d]
                )
                gi, gf1, gf2, go, gg = pre.split(hid, dim=1)
                c = torch.sigmoid(gi) * torch.tanh(gg) + forget_scale * (
                    torch.sigmoid(gf1) * c1 + torch.sigmoid(gf2) * c2
                )
                c = c * mf[:, i, j, None].to(x.dtype)
                cs[i, j] = c
                hs[i, j] = torch.sigmoid(go) * torch.tanh(c)
        rows = [torch.stack([hs[i, j] for j in range(width)], dim=-1) for i in range(height)]
        out = torch.stack(rows, dim=-2)  # [B, h, H, W]
        outs.append(torch.flip(out, flip) if flip else out)
    if merge == "sum":
        return torch.stack(outs).sum(0)
    return torch.cat(outs, dim=1)
