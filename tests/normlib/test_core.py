"""Tests of normlib.core: the statistics, the fused affine and the analytic backward, for every S."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normlib.core import Moments, moments, normalize, normalize_backward
from normlib.sets import batch_set, group_set, instance_set, layer_set

# (set, input shape, parameter shape broadcastable to the input)
CASES = [
    ("BN-4d", batch_set(), (4, 6, 3, 5), (1, 6, 1, 1)),
    ("BN-2d", batch_set(), (8, 5), (1, 5)),
    ("IN", instance_set(), (3, 4, 5, 2), (1, 4, 1, 1)),
    ("GN", group_set(3), (2, 6, 3, 4), (1, 6, 1, 1)),
    ("GN-2d", group_set(2), (3, 4), (1, 4)),
    ("LN-1", layer_set(1), (4, 3, 7), (7,)),
    ("LN-2", layer_set(2), (4, 3, 7), (3, 7)),
    ("LN-3", layer_set(3), (2, 4, 3, 5), (4, 3, 5)),
]
IDS = [c[0] for c in CASES]


def _elementwise(x, S, eps, w=None, b=None, center=True):
    """The textbook definition with torch's elementwise ops; autograd differentiates it."""
    xv = x.reshape(S.view_shape(tuple(x.shape)))
    axes = S.reduce_axes(tuple(x.shape))
    if center:
        d = xv - xv.mean(axes, keepdim=True)
    else:
        d = xv
    var = (d * d).mean(axes, keepdim=True)
    y = (d / torch.sqrt(var + eps)).reshape(x.shape)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _data(shape, pshape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 2 + 0.5).requires_grad_()
    w = (1 + 0.5 * torch.randn(pshape, generator=g, dtype=dtype)).requires_grad_()
    b = torch.randn(pshape, generator=g, dtype=dtype).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("center", [True, False], ids=["centred", "rms"])
@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_analytic_backward_passes_gradcheck_with_fused_affine(name, S, shape, pshape, center):
    x, w, b = _data(shape, pshape)
    f = lambda x, w, b: normalize(x, S, 1e-5, w, b, center=center)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_analytic_backward_passes_gradcheck_without_affine_and_with_bias_only(name, S, shape, pshape):
    x, w, b = _data(shape, pshape)
    assert torch.autograd.gradcheck(lambda x: normalize(x, S, 1e-5)[0], (x,))
    assert torch.autograd.gradcheck(lambda x, b: normalize(x, S, 1e-5, None, b)[0], (x, b))
    assert torch.autograd.gradcheck(lambda x, w: normalize(x, S, 1e-5, w)[0], (x, w))


@pytest.mark.parametrize("center", [True, False], ids=["centred", "rms"])
@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_gradients_equal_autograd_through_elementwise_ops(name, S, shape, pshape, center):
    x, w, b = _data(shape, pshape, seed=1)
    dy = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, _ = normalize(x, S, 1e-5, w, b, center=center)
    grads = torch.autograd.grad(y, (x, w, b), dy)
    y_ref = _elementwise(x, S, 1e-5, w, b, center=center)
    ref = torch.autograd.grad(y_ref, (x, w, b), dy)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_numpy_and_torch_give_the_same_output_and_moments(name, S, shape, pshape):
    x, w, b = _data(shape, pshape, seed=3)
    xn, wn, bn = (t.detach().numpy() for t in (x, w, b))
    y_np, m_np = normalize(xn, S, 1e-5, wn, bn)
    y_t, m_t = normalize(x, S, 1e-5, w, b)
    assert isinstance(y_np, np.ndarray) and isinstance(m_np.mean, np.ndarray)
    np.testing.assert_allclose(y_np, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m_np.mean, m_t.mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m_np.var, m_t.var.numpy(), rtol=1e-12)
    assert m_np.count == m_t.count == S.set_size(shape)
    mm = moments(xn, S)
    np.testing.assert_allclose(mm.var, m_np.var, rtol=1e-12)


@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_normalize_backward_is_the_same_for_numpy_and_torch(name, S, shape, pshape):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    xv = x.reshape(S.view_shape(shape))
    axes = S.reduce_axes(shape)
    xhat_t, m = normalize(xv.reshape(shape), S, 1e-5)
    xhat = xhat_t.reshape(xv.shape)
    rstd = 1 / torch.sqrt(m.var + 1e-5)
    dy = torch.randn(xv.shape, generator=g, dtype=torch.float64)
    dx_t = normalize_backward(dy, xhat, rstd, axes)
    dx_n = normalize_backward(dy.numpy(), xhat.numpy(), rstd.numpy(), axes)
    np.testing.assert_allclose(dx_n, dx_t.numpy(), rtol=1e-10, atol=1e-12)
    # and it is the input gradient autograd finds
    xr = x.clone().requires_grad_()
    (ref,) = torch.autograd.grad(_elementwise(xr, S, 1e-5), xr, dy.reshape(shape))
    np.testing.assert_allclose(dx_n.reshape(shape), ref.numpy(), rtol=1e-10, atol=1e-10)


def test_input_gradient_sums_to_zero_over_each_set_and_is_orthogonal_to_x_hat():
    x, _, _ = _data((4, 6, 3, 5), (1, 6, 1, 1), seed=5)
    dy = torch.randn(x.shape, dtype=torch.float64)
    y, _ = normalize(x, group_set(3), 1e-12)
    (dx,) = torch.autograd.grad(y, x, dy)
    v = dx.reshape(4, 3, -1)
    assert v.sum(-1).abs().max() < 1e-10
    assert (v * y.detach().reshape(4, 3, -1)).sum(-1).abs().max() < 1e-8


def test_variance_is_accurate_in_float32_with_a_large_offset():
    # E[x²] − E[x]² would lose every digit here: x² ≈ 1e8, the variance is 1
    g = torch.Generator().manual_seed(6)
    base = torch.randn(64, 256, generator=g, dtype=torch.float64)
    x32 = (base + 1e4).float()
    exact = x32.double().var(-1, unbiased=False)
    _, m = normalize(x32, layer_set(1), 1e-5)
    rel = ((m.var.reshape(-1).double() - exact) / exact).abs().max().item()
    assert rel < 1e-5
    naive = ((x32 * x32).mean(-1) - x32.mean(-1) ** 2).double()
    assert ((naive - exact) / exact).abs().max().item() > 0.1  # the formula the core avoids


def test_float32_gradients_with_a_large_offset_are_close_to_float64():
    g = torch.Generator().manual_seed(7)
    x64 = torch.randn(16, 8, 4, 4, generator=g, dtype=torch.float64) + 300.0
    dy = torch.randn(x64.shape, generator=g, dtype=torch.float64)
    grads = []
    for dtype in (torch.float64, torch.float32):
        x = x64.to(dtype).requires_grad_()
        y, _ = normalize(x, batch_set(), 1e-5)
        (gx,) = torch.autograd.grad(y, x, dy.to(dtype))
        grads.append(gx.double())
    assert (grads[0] - grads[1]).abs().max().item() < 1e-3


def test_half_precision_is_computed_in_float32_and_returned_in_half():
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(8, dtype=torch.bfloat16, requires_grad=True)
    y, m = normalize(x, layer_set(1), 1e-5, w)
    assert y.dtype == torch.bfloat16 and m.var.dtype == torch.float32
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.bfloat16


def test_moments_are_returned_without_gradient_and_in_the_viewed_shape():
    x = torch.randn(2, 6, 3, requires_grad=True)
    y, m = normalize(x, group_set(3), 1e-5)
    assert isinstance(m, Moments)
    assert m.mean.shape == (2, 3, 1, 1) and m.var.shape == (2, 3, 1, 1) and m.count == 6
    assert not m.mean.requires_grad and not m.var.requires_grad
    assert y.requires_grad and y.shape == x.shape


def test_rms_mode_returns_zero_mean_and_the_mean_square():
    x = np.array([[3.0, 4.0]])
    y, m = normalize(x, layer_set(1), 1e-12, center=False)
    np.testing.assert_allclose(m.var, [[12.5]])
    np.testing.assert_allclose(m.mean, [[0.0]])
    np.testing.assert_allclose(y, x / np.sqrt(12.5))


def test_parameter_gradient_only_flows_when_the_parameter_requires_it():
    x = torch.randn(4, 6, 5)
    w = torch.randn(1, 6, 1, requires_grad=True)
    b = torch.randn(1, 6, 1)
    y, _ = normalize(x, batch_set(), 1e-5, w, b)
    y.square().sum().backward()
    assert w.grad is not None and w.grad.shape == w.shape and b.grad is None


def test_parameter_that_does_not_broadcast_is_rejected_with_both_shapes():
    with pytest.raises(ValueError, match=r"parameter of shape \[5\] does not broadcast against input of shape \[2, 6, 3\]"):
        normalize(torch.randn(2, 6, 3), batch_set(), 1e-5, torch.ones(5))


def test_non_contiguous_output_gradient_is_handled():
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    y, _ = normalize(x, layer_set(1), 1e-5)
    dy = torch.randn(5, 4, 3, dtype=torch.float64).permute(2, 1, 0)
    (gx,) = torch.autograd.grad(y, x, dy)
    xr = x.detach().clone().requires_grad_()
    (ref,) = torch.autograd.grad(_elementwise(xr, layer_set(1), 1e-5), xr, dy)
    torch.testing.assert_close(gx, ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    c_per_g=st.integers(1, 3),
    groups=st.integers(1, 3),
    hw=st.integers(1, 6),
    offset=st.floats(-100, 100),
    seed=st.integers(0, 2**16),
)
def test_group_norm_gradients_match_autograd_for_random_shapes(n, c_per_g, groups, hw, offset, seed):
    if c_per_g * hw < 2:
        return  # one entry per set: no spread to normalize by
    S = group_set(groups)
    shape = (n, c_per_g * groups, hw)
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + offset).requires_grad_()
    w = torch.randn(1, shape[1], 1, generator=g, dtype=torch.float64).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(normalize(x, S, 1e-3, w)[0], (x, w), dy)
    want = torch.autograd.grad(_elementwise(x, S, 1e-3, w), (x, w), dy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
