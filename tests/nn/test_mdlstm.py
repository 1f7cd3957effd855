"""The wavefront MDLSTM against the plain cell-by-cell loop (same parameters)."""

from __future__ import annotations

import pytest
import torch

from inkpack.errors import InkpackError
from inkpack.nn.mdlstm import MDLSTM, clear_workspace, mask_from_sizes
from inkpack.nn.mdlstm_reference import mdlstm_reference

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _layer(c: int, h: int, dtype: torch.dtype, seed: int = 0, **kw) -> MDLSTM:
    torch.manual_seed(seed)
    m = MDLSTM(c, h, **kw).to(dtype)
    with torch.no_grad():  # larger than the default init, so that all paths matter
        for p in m.parameters():
            p.uniform_(-0.8, 0.8)
    return m


def _reference(m: MDLSTM, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return mdlstm_reference(x, m.weight_ih, m.weight_hh, m.bias, mask, m.forget_scale, m.merge)


def _outputs_and_grads(fn, x: torch.Tensor, params: list[torch.Tensor], seed: int = 1):
    y = fn(x)
    torch.manual_seed(seed)
    gy = torch.randn(y.shape, dtype=y.dtype)  # randn_like would follow y's strides
    grads = torch.autograd.grad(y, [x, *params], gy)
    return y.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "directions,merge,scale,masked",
    [(4, "concat", 0.5, False), (4, "concat", 0.5, True), (4, "sum", 1.0, True), (2, "concat", 1.0, False),
     (1, "sum", 0.5, True)],
)
def test_matches_reference(dtype, directions, merge, scale, masked):
    m = _layer(3, 4, dtype, directions=directions, merge=merge, forget_scale=scale)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 5, 7, dtype=dtype, requires_grad=True)
    mask = mask_from_sizes(torch.tensor([5, 3, 1]), torch.tensor([7, 4, 2]), 5, 7) if masked else None
    params = list(m.parameters())
    y, g = _outputs_and_grads(lambda t: m(t, mask), x, params)
    y_ref, g_ref = _outputs_and_grads(lambda t: _reference(m, t, mask), x, params)
    assert y.shape == (3, m.out_channels, 5, 7)
    assert (y - y_ref).abs().max() <= TOL[dtype]
    for name, a, b in zip(["x", "weight_ih", "weight_hh", "bias"], g, g_ref):
        assert (a - b).abs().max() <= TOL[dtype], name
    assert y.abs().max() > 0.05  # not trivially zero


def test_random_mask_matches_reference():
    """Any mask (holes, islands), not only bottom/right padding."""
    m = _layer(3, 4, torch.float64, merge="sum")
    torch.manual_seed(5)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 6, 8) > 0.3
    y, g = _outputs_and_grads(lambda t: m(t, mask), x, list(m.parameters()))
    y_ref, g_ref = _outputs_and_grads(lambda t: _reference(m, t, mask), x, list(m.parameters()))
    assert (y - y_ref).abs().max() <= 1e-10
    assert max((a - b).abs().max() for a, b in zip(g, g_ref)) <= 1e-10


def test_degenerate_maps_match_reference():
    for H, W in [(1, 1), (1, 6), (6, 1)]:
        m = _layer(2, 3, torch.float64)
        x = torch.randn(2, 2, H, W, dtype=torch.float64, requires_grad=True)
        y, g = _outputs_and_grads(m, x, list(m.parameters()))
        y_ref, g_ref = _outputs_and_grads(lambda t, m=m: _reference(m, t, None), x, list(m.parameters()))
        assert (y - y_ref).abs().max() <= 1e-10
        assert max((a - b).abs().max() for a, b in zip(g, g_ref)) <= 1e-10


def test_gradcheck_tiny_float64():
    m = _layer(2, 2, torch.float64, forget_scale=0.5)
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = mask_from_sizes(torch.tensor([3, 2]), torch.tensor([3, 2]), 3, 3)

    def f(x, *params):  # gradcheck perturbs the parameters in place
        return m(x, mask)

    assert torch.autograd.gradcheck(f, (x, m.weight_ih, m.weight_hh, m.bias))


def test_masked_inputs_do_not_matter_and_outputs_are_zero():
    m = _layer(3, 4, torch.float64)
    mask = mask_from_sizes(torch.tensor([4, 2]), torch.tensor([3, 6]), 4, 6)
    x1 = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    x2 = torch.where(mask[:, None], x1.detach(), torch.randn_like(x1) * 100).requires_grad_()
    y1, y2 = m(x1, mask), m(x2, mask)
    assert torch.equal(y1, y2)
    assert torch.all(y1.masked_select(~mask[:, None]) == 0)
    (gx,) = torch.autograd.grad(y1.sum(), x1)
    assert torch.all(gx.masked_select(~mask[:, None].expand_as(gx)) == 0)


@pytest.mark.parametrize("axis", ["column", "row"])
def test_separator_mask_equals_separate_runs(axis):
    """Two examples side by side (or stacked) with a masked separator line between them."""
    m = _layer(2, 3, torch.float64)
    a = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    b = torch.randn((1, 2, 4, 3) if axis == "column" else (1, 2, 2, 5), dtype=torch.float64)
    dim = 3 if axis == "column" else 2
    sep_shape = list(a.shape)
    sep_shape[dim] = 1
    canvas = torch.cat([a, torch.full(sep_shape, 7.0, dtype=torch.float64), b], dim=dim)
    mask = torch.ones(canvas.shape[0], *canvas.shape[2:], dtype=torch.bool)
    mask.narrow(dim - 1, a.shape[dim], 1).fill_(False)
    y = m(canvas, mask)
    n = a.shape[dim]
    assert torch.allclose(y.narrow(dim, 0, n), m(a), atol=1e-12, rtol=0)
    assert torch.allclose(y.narrow(dim, n + 1, b.shape[dim]), m(b), atol=1e-12, rtol=0)
    assert torch.all(y.narrow(dim, n, 1) == 0)


def test_mask_from_sizes_by_hand():
    m = mask_from_sizes(torch.tensor([2, 1]), torch.tensor([1, 3]), 2, 3)
    expected = torch.tensor([[[1, 0, 0], [1, 0, 0]], [[1, 1, 1], [0, 0, 0]]], dtype=torch.bool)
    assert torch.equal(m, expected)


def test_repeated_backward_and_no_grad_reuse():
    clear_workspace()  # the recycling below assumes no buffers left over from other tests
    m = _layer(2, 3, torch.float64)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = m(x)
    (g1,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g1, g2)
    with torch.no_grad():
        y_ng = m(x)
    assert torch.equal(y_ng, y.detach())

    y = m(x)
    torch.autograd.grad(y.sum(), x, retain_graph=True)
    y3 = m(x * 2)  # recycles y's saved buffers: a later backward through y must refuse, not lie
    with pytest.raises(RuntimeError, match="recycled"):
        torch.autograd.grad(y.sum(), x)
    (g3,) = torch.autograd.grad(y3.sum(), x)
    assert g3.abs().sum() > 0


def test_bad_input_raises():
    m = MDLSTM(3, 2)
    with pytest.raises(InkpackError, match="expected input"):
        m(torch.zeros(1, 2, 3, 3))
    with pytest.raises(InkpackError, match="mask"):
        m(torch.zeros(1, 3, 3, 3), torch.ones(1, 3, 4, dtype=torch.bool))
    with pytest.raises(InkpackError, match="directions"):
        MDLSTM(3, 2, directions=3)


def test_forward_after_inference_mode_reuses_pool_buffers():
    """Buffers first taken under ``torch.inference_mode()`` (a recognizer) are recycled by a
    later forward with autograd (training in the same process): that must work and agree."""
    m = _layer(2, 3, torch.float32)
    x = torch.randn(1, 2, 5, 6)
    with torch.inference_mode():
        y_inf = m(x)
    xg = x.clone().requires_grad_(True)
    y = m(xg)  # failed with "Inplace update to inference tensor outside InferenceMode"
    y.sum().backward()
    assert torch.allclose(y.detach(), y_inf, atol=1e-6)
    assert xg.grad is not None and xg.grad.abs().sum() > 0
