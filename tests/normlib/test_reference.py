"""Every fast path of normlib against the reference core (:mod:`normlib.reference`).

The reference is three short formulas (moments, standardize, the backward);
the C kernels, the whole-tensor autograd Function, eval-mode Batch Norm,
FrozenBatchNorm, the data-dependent init of weight norm and cross-process
Batch Norm must give its numbers, for every set S, dtype, affine pattern and
``center``.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import normlib.functional as NF
from normlib import fused, reference
from normlib.core import normalize
from normlib.sets import batch_set, group_set, instance_set, layer_set

# (name, set, input shape, parameter shape broadcastable to the input)
CASES = [
    ("BN-4d", batch_set(), (4, 6, 3, 5), (1, 6, 1, 1)),
    ("BN-3d", batch_set(), (4, 3, 10), (1, 3, 1)),
    ("BN-2d", batch_set(), (8, 5), (1, 5)),
    ("IN", instance_set(), (3, 4, 5, 2), (1, 4, 1, 1)),
    ("GN", group_set(3), (2, 6, 3, 4), (1, 6, 1, 1)),
    ("GN-G1", group_set(1), (2, 6, 3, 4), (1, 6, 1, 1)),
    ("GN-GC", group_set(6), (2, 6, 3, 4), (1, 6, 1, 1)),
    ("LN-1", layer_set(1), (4, 3, 7), (7,)),
    ("LN-2", layer_set(2), (4, 3, 7), (3, 7)),
]
IDS = [c[0] for c in CASES]
AFFINE = ["none", "weight", "bias", "both"]
PATHS = ["fused", "whole-tensor"]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-5)}


def _path(path):
    return fused.disabled() if path == "whole-tensor" else contextlib.nullcontext()


def _data(shape, pshape, affine, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)
    w = (1 + 0.5 * torch.randn(pshape, generator=g, dtype=torch.float64)).to(dtype)
    b = torch.randn(pshape, generator=g, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, (w if affine in ("weight", "both") else None), (b if affine in ("bias", "both") else None), dy


def _viewed(S, shape, p):
    """A parameter broadcastable to ``shape`` in the view of S (Group Norm splits C into (G, C/G))."""
    if p is None or S.groups is None:
        return p
    return p.reshape(p.shape[0], S.groups, -1, *p.shape[2:])


def _reference(x, S, w, b, dy, center, eps=1e-5):
    """y, mean, var and (dx, dw, db) from the reference core, in float64."""
    shape = tuple(x.shape)
    x64 = x.double()
    m = reference.moments(x64, S, center=center)
    xv = x64.reshape(S.view_shape(shape))
    wv, bv = (None if p is None else _viewed(S, shape, p.double()) for p in (w, b))
    y = reference.standardize(xv, m.mean, m.var, eps, wv, bv).reshape(shape)
    dx, dw, db = reference.standardize_backward(dy.double().reshape(xv.shape), xv, S.reduce_axes(shape), eps, wv,
                                                None if bv is None else tuple(bv.shape), center=center)
    return y, m, (dx.reshape(shape), None if w is None else dw.reshape(w.shape),
                  None if b is None else db.reshape(b.shape))


@pytest.mark.parametrize("center", [True, False], ids=["centred", "rms"])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_reference_backward_is_autograd_of_the_reference_forward(name, S, shape, pshape, affine, center):
    x, w, b, dy = _data(shape, pshape, affine, torch.float64)
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    m = reference.moments(x, S, center=center)
    xv = x.reshape(S.view_shape(shape))
    y = reference.standardize(xv, m.mean, m.var, 1e-5, _viewed(S, shape, w), _viewed(S, shape, b))
    want = torch.autograd.grad(y.reshape(shape), leaves, dy)
    _, _, got = _reference(x.detach(), S, w, b, dy, center)
    for g, e in zip([t for t in got if t is not None], want):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("center", [True, False], ids=["centred", "rms"])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_normalize_forward_and_backward_equal_the_reference(name, S, shape, pshape, affine, center, dtype, path):
    x, w, b, dy = _data(shape, pshape, affine, dtype)
    y_ref, m_ref, grads_ref = _reference(x, S, w, b, dy, center)
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    with _path(path):
        y, m = normalize(x, S, 1e-5, w, b, center=center)
        got = torch.autograd.grad(y, leaves, dy)
    tol = TOL[dtype]
    assert y.dtype == dtype and m.mean.dtype == dtype
    torch.testing.assert_close(y.double(), y_ref, **tol)
    torch.testing.assert_close(m.mean.double(), m_ref.mean, **tol)
    torch.testing.assert_close(m.var.double(), m_ref.var, **tol)
    for g, e in zip(got, [t for t in grads_ref if t is not None]):
        torch.testing.assert_close(g.double(), e, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
def test_half_precision_is_the_float32_reference_rounded(dtype, path):
    x, w, b, dy = _data((4, 6, 3, 5), (1, 6, 1, 1), "both", dtype)
    S = group_set(3)
    y_ref, _, _ = _reference(x.float(), S, w.float(), b.float(), dy.float(), True)
    with _path(path):
        y, _ = normalize(x, S, 1e-5, w, b)
    assert y.dtype == dtype
    torch.testing.assert_close(y, y_ref.to(dtype))


@pytest.mark.parametrize("name,S,shape,pshape", CASES, ids=IDS)
def test_numpy_input_equals_the_torch_path(name, S, shape, pshape):
    x, w, b, _ = _data(shape, pshape, "both", torch.float64)
    y_np, m_np = normalize(x.numpy(), S, 1e-5, w.numpy(), b.numpy())
    y_t, m_t = normalize(x, S, 1e-5, w, b)
    assert isinstance(y_np, np.ndarray)
    np.testing.assert_allclose(y_np, y_t.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m_np.var, m_t.var.numpy(), rtol=1e-12)


@pytest.mark.parametrize("ndim", [2, 3, 4])
def test_eval_batch_norm_is_standardize_with_the_running_statistics(ndim):
    x, w, b, _ = _data((3, 4, 5, 2)[:ndim], (4,), "both", torch.float64)
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    view = lambda p: p.reshape(1, -1, *[1] * (ndim - 2))  # noqa: E731
    want = reference.standardize(x, view(rm), view(rv), 1e-5, view(w), view(b))
    torch.testing.assert_close(NF.batch_norm(x, rm, rv, w, b, training=False), want, rtol=1e-14, atol=1e-14)


def test_frozen_batch_norm_is_standardize_with_its_buffers():
    from normlib.practice import FrozenBatchNorm

    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    frozen = FrozenBatchNorm.from_batch_norm(bn)
    x = torch.randn(3, 4, 5, 5)
    view = lambda p: p.reshape(1, -1, 1, 1)  # noqa: E731
    want = reference.standardize(x, view(bn.running_mean), view(bn.running_var), bn.eps, view(bn.weight),
                                 view(bn.bias))
    torch.testing.assert_close(frozen(x), want.detach(), rtol=1e-6, atol=1e-6)


def test_data_dependent_init_takes_the_reference_moments():
    from normlib.weight_norm import data_dependent_init, weight_norm

    torch.manual_seed(0)
    conv = weight_norm(torch.nn.Conv2d(3, 5, 3))
    x = torch.randn(8, 3, 6, 6) * 3 + 1
    mean, std = data_dependent_init(conv, x)
    with torch.no_grad():
        conv.parametrizations.weight.original0.fill_(1.0)
        conv.bias.zero_()
        m = reference.moments(conv(x), batch_set())
    torch.testing.assert_close(mean, m.mean.reshape(-1))
    torch.testing.assert_close(std, (m.var.reshape(-1) + 1e-12).sqrt())


def test_cross_process_batch_norm_equals_the_reference_over_the_whole_batch():
    from normlib.distributed import make_problem, spawn_check

    sizes = (2, 3)
    runs = spawn_check(sizes, steps=1)
    x, dy, w, b = make_problem(sizes)
    S, view = batch_set(), (lambda p: p.reshape(1, -1, 1, 1))  # noqa: E731
    y, _, (dx, dw, db) = _reference(x, S, view(w), view(b), dy, True)
    torch.testing.assert_close(torch.cat([r["y"] for r in runs]), y)
    torch.testing.assert_close(torch.cat([r["dx"] for r in runs]), dx)
    torch.testing.assert_close(sum(r["dweight"] for r in runs), dw.reshape(-1))  # each rank holds its share
    torch.testing.assert_close(sum(r["dbias"] for r in runs), db.reshape(-1))
