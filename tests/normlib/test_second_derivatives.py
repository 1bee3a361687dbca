"""Second derivatives of every normalization op are exact (issue 16, item 1).

A gradient penalty (WGAN-GP, R1, input-gradient regularizers, meta-learning)
differentiates the backward itself.  The fast backward (C kernel or in-place
whole-tensor ops) is not differentiable; with ``create_graph=True`` normlib
runs the reference backward in torch operations instead.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import normlib.functional as NF
import normlib.nn as nnn
from normlib import fused
from normlib.rms import rms_norm

D = dict(dtype=torch.float64)

# name, op(x, w, b), input shape, parameter shape
OPS = [
    ("batch_norm", lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True), (4, 3, 5), (3,)),
    ("batch_norm-2d", lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True), (6, 3), (3,)),
    ("layer_norm", lambda x, w, b: NF.layer_norm(x, (5,), w, b), (4, 3, 5), (5,)),
    ("instance_norm", lambda x, w, b: NF.instance_norm(x, weight=w, bias=b), (2, 3, 5), (3,)),
    ("group_norm", lambda x, w, b: NF.group_norm(x, 2, w, b), (2, 4, 5), (4,)),
    ("rms_norm", lambda x, w, b: rms_norm(x, (5,), w, eps=1e-6), (4, 3, 5), (5,)),
]
IDS = [o[0] for o in OPS]


def _path(path):
    return fused.disabled() if path == "whole-tensor" else contextlib.nullcontext()


def _leaves(shape, pshape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, **D) * 2 + 0.3).requires_grad_()
    w = (1 + 0.3 * torch.randn(pshape, generator=g, **D)).requires_grad_()
    b = torch.randn(pshape, generator=g, **D).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("path", ["fused", "whole-tensor"])
@pytest.mark.parametrize("name,op,shape,pshape", OPS, ids=IDS)
def test_gradgradcheck_in_float64(name, op, shape, pshape, path):
    x, w, b = _leaves(shape, pshape)
    with _path(path):
        assert gradcheck(op, (x, w, b))
        assert gradgradcheck(op, (x, w, b))


@pytest.mark.parametrize("name,op,shape,pshape", OPS, ids=IDS)
def test_torch_func_hessian_equals_the_hessian_of_torch_ops(name, op, shape, pshape):
    x, w, b = (t.detach() for t in _leaves(shape, pshape))
    proj = torch.randn(shape, generator=torch.Generator().manual_seed(1), **D)
    ref_op = {
        "batch_norm": lambda x: torch.nn.functional.batch_norm(x, None, None, w, b, training=True),
        "batch_norm-2d": lambda x: torch.nn.functional.batch_norm(x, None, None, w, b, training=True),
        "layer_norm": lambda x: torch.nn.functional.layer_norm(x, (5,), w, b),
        "instance_norm": lambda x: torch.nn.functional.instance_norm(x, weight=w, bias=b),
        "group_norm": lambda x: torch.nn.functional.group_norm(x, 2, w, b),
        "rms_norm": lambda x: torch.nn.functional.rms_norm(x, (5,), w, eps=1e-6),
    }[name]
    h = torch.func.hessian(lambda x: (torch.tanh(op(x, w, b)) * proj).sum())(x)
    h_ref = torch.func.hessian(lambda x: (torch.tanh(ref_op(x)) * proj).sum())(x)
    torch.testing.assert_close(h, h_ref)


@pytest.mark.parametrize("path", ["fused", "whole-tensor"])
@pytest.mark.parametrize("layer", ["LayerNorm", "BatchNorm1d", "GroupNorm", "RMSNorm"])
def test_input_gradient_penalty_gives_torchs_parameter_gradient(layer, path):
    """The issue's reproducer: Linear → norm, loss = a penalty on the input gradient."""
    make = {
        "LayerNorm": lambda m: m.LayerNorm(5),
        "BatchNorm1d": lambda m: m.BatchNorm1d(5),
        "GroupNorm": lambda m: m.GroupNorm(1, 5),
        "RMSNorm": lambda m: m.RMSNorm(5),
    }[layer]
    grads = []
    for lib in (torch.nn, nnn):
        torch.manual_seed(0)
        lin = torch.nn.Linear(5, 5).double()
        model = torch.nn.Sequential(lin, make(lib).double())
        x = torch.randn(8, 5, **D, requires_grad=True)
        with _path(path):
            out = (model(x) * torch.arange(5.0, dtype=torch.float64)).sum()
            g, = torch.autograd.grad(out, x, create_graph=True)
            assert g.requires_grad
            g.pow(2).sum().backward()
        grads.append(lin.weight.grad.clone())
    assert grads[1].norm() > 0
    torch.testing.assert_close(grads[1], grads[0])


def test_first_order_backward_keeps_the_fast_path():
    """Without create_graph the kernel's backward runs (no reference ops in the graph of the gradient)."""
    x = torch.randn(4, 8, requires_grad=True)
    g, = torch.autograd.grad(NF.layer_norm(x, (8,)).pow(2).sum(), x)
    assert not g.requires_grad
