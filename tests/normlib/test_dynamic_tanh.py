"""Dynamic Tanh against its plain-torch definition, and its bad-input errors."""
from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
import torch

import normlib.dynamic_tanh as dt
from normlib.dynamic_tanh import DyT, dynamic_tanh


def reference(x, alpha, w, b):
    return w * torch.tanh(alpha * x) + b


@pytest.mark.parametrize("shape,nshape", [((4, 8), (8,)), ((2, 5, 8), (8,)), ((2, 3, 4, 5), (4, 5))])
def test_matches_plain_torch_forward_and_backward(shape, nshape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    m = DyT(nshape, alpha_init=0.7).double()
    with torch.no_grad():
        m.weight.normal_(generator=g)
        m.bias.normal_(generator=g)
    y = m(x)
    ref = reference(x, m.alpha, m.weight, m.bias)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    dy = torch.randn(*shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(y, (x, m.alpha, m.weight, m.bias), dy)
    theirs = torch.autograd.grad(ref, (x, m.alpha, m.weight, m.bias), dy)
    for a, r in zip(ours, theirs):
        torch.testing.assert_close(a, r)


def test_initial_parameters_and_state():
    m = DyT(6)
    assert m.alpha.shape == (1,) and float(m.alpha.detach()) == 0.5
    assert torch.equal(m.weight, torch.ones(6)) and torch.equal(m.bias, torch.zeros(6))
    assert list(m.state_dict()) == ["alpha", "weight", "bias"]
    assert list(DyT(6, elementwise_affine=False).state_dict()) == ["alpha"]
    assert DyT(6, bias=False).bias is None
    assert repr(DyT(6)) == "DyT((6,), alpha_init=0.5, elementwise_affine=True, bias=True)"


def test_squashes_outliers_and_is_not_scale_invariant():
    x = torch.tensor([[0.1, 1.0, 100.0]], dtype=torch.float64)
    y = DyT(3).double()(x).detach()
    assert y.max() <= 1.0 and float(y[0, 2] / y[0, 1]) < 2.2  # 100× the input, not 2.2× the output
    assert float(y[0, 0]) == pytest.approx(0.05, rel=1e-3)  # linear near 0
    assert not torch.allclose(DyT(3).double()(2 * x), y)  # unlike Layer Norm, DyT(2x) != DyT(x)


def test_numpy_in_numpy_out_with_tensor_alpha_equivalent():
    x = np.random.default_rng(0).normal(size=(3, 4))
    y = dynamic_tanh(x, 4, 0.5, np.full(4, 2.0), np.zeros(4))
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, 2 * np.tanh(0.5 * x))
    yt = dynamic_tanh(torch.from_numpy(x), 4, torch.tensor([0.5], dtype=torch.float64))
    np.testing.assert_allclose(yt.numpy(), np.tanh(0.5 * x))


def test_docstring_examples_run():
    assert doctest.testmod(dt).failed == 0


# --------------------------------------------------------------------------- bad input
def test_rejects_non_float_input():
    with pytest.raises(TypeError, match="dynamic_tanh: expected a floating-point input, got dtype torch.int64"):
        DyT(3)(torch.ones(2, 3, dtype=torch.long))


def test_rejects_wrong_trailing_shape():
    with pytest.raises(ValueError, match=re.escape("dynamic_tanh: Given normalized_shape=[4], expected input "
                                                   "with shape [*, 4], but got input of size [2, 3]")):
        DyT(4)(torch.randn(2, 3))


@pytest.mark.parametrize("alpha,what", [(torch.ones(2), r"of shape \[2\]"), (np.ones((1, 3)), r"of shape \[1, 3\]"),
                                        ("0.5", "of type str"), (True, "of type bool"),
                                        (torch.ones(1, dtype=torch.long), r"of shape \[1\]")])
def test_rejects_alpha_that_is_not_one_number(alpha, what):
    with pytest.raises(ValueError, match=rf"dynamic_tanh: alpha must be one floating-point number, got alpha "
                                         rf"{what} for input of shape \[2, 3\]"):
        dynamic_tanh(torch.randn(2, 3), 3, alpha)


def test_rejects_parameters_of_the_wrong_shape():
    with pytest.raises(ValueError, match=re.escape("dynamic_tanh: expected weight of shape [3], got weight of "
                                                   "shape [4] for input of shape [2, 3]")):
        dynamic_tanh(torch.randn(2, 3), 3, 0.5, torch.ones(4))


@pytest.mark.parametrize("alpha_init", [float("nan"), float("inf"), "0.5", None, True])
def test_module_rejects_bad_alpha_init(alpha_init):
    with pytest.raises(ValueError, match="DyT: alpha_init must be a finite number"):
        DyT(3, alpha_init=alpha_init)


def test_module_rejects_bad_shape():
    with pytest.raises(ValueError, match="DyT: normalized_shape must have at least one dimension"):
        DyT([])
    with pytest.raises(ValueError, match=r"normalized_shape\[0\]"):
        DyT(0)
