"""Conditional normalization (conditional BN, FiLM, AdaIN, adaLN, adaLN-Zero) against plain torch."""
from __future__ import annotations

import doctest
import re

import pytest
import torch
import torch.nn.functional as TF

import normlib.adaptive_norm as an
from normlib.adaptive_norm import NORM_KINDS, AdaLNZero, AdaptiveNorm


def plain_norm(kind, x, eps=1e-5, groups=None, training=True):
    """The base normalization in torch's own ops."""
    if kind == "layer":
        return TF.layer_norm(x, x.shape[-1:], eps=eps)
    if kind == "rms":
        return TF.rms_norm(x, x.shape[-1:], eps=eps)
    if kind == "group":
        return TF.group_norm(x, groups, eps=eps)
    if kind == "instance":
        return TF.group_norm(x, x.shape[1], eps=eps)
    return TF.batch_norm(x, None, None, training=True, eps=eps)


def shape_for(kind):
    return (4, 5, 8) if NORM_KINDS[kind] == "last" else (4, 8, 3, 3)


def expand(p, kind, ndim):
    return p[:, None, :] if NORM_KINDS[kind] == "last" else p.reshape(*p.shape, *([1] * (ndim - 2)))


@pytest.mark.parametrize("kind", sorted(NORM_KINDS))
def test_matches_plain_torch_reference(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape_for(kind), generator=g, dtype=torch.float64) * 2 + 1
    c = torch.randn(4, 3, generator=g, dtype=torch.float64)
    m = AdaptiveNorm(8, 3, norm=kind, num_groups=2 if kind == "group" else None).double()
    gamma, beta = (c @ m.proj.weight.T + m.proj.bias).chunk(2, dim=1)
    ref = plain_norm(kind, x, groups=2) * (1 + expand(gamma, kind, x.ndim)) + expand(beta, kind, x.ndim)
    torch.testing.assert_close(m(x, c), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(NORM_KINDS))
def test_zero_init_is_the_plain_norm_and_gradients_reach_the_projection(kind):
    x = torch.randn(*shape_for(kind), dtype=torch.float64)
    c = torch.randn(4, 3, dtype=torch.float64)
    m = AdaptiveNorm(8, 3, norm=kind, num_groups=4 if kind == "group" else None, zero_init=True).double()
    y = m(x, c)
    torch.testing.assert_close(y, plain_norm(kind, x, groups=4), rtol=1e-10, atol=1e-10)
    (y * torch.randn_like(y)).sum().backward()
    assert m.proj.weight.grad.abs().sum() > 0  # the condition can start to steer at once


def test_the_condition_steers_the_output_statistics():
    # γ = 0, β = c: the output's per-feature mean is the condition itself
    m = AdaptiveNorm(2, 2, norm="instance", zero_init=True).double()
    with torch.no_grad():
        m.proj.weight[2:] = torch.eye(2, dtype=torch.float64)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    c = torch.tensor([[1.0, -2.0], [0.0, 3.0], [5.0, 5.0]], dtype=torch.float64)
    torch.testing.assert_close(m(x, c).mean(dim=(2, 3)), c, rtol=0, atol=1e-12)


def test_batch_kind_keeps_running_statistics_and_uses_them_in_eval():
    m = AdaptiveNorm(3, 2, norm="batch", zero_init=True, momentum=1.0).double()
    x = torch.randn(16, 3, 4, dtype=torch.float64) * 3 + 2
    c = torch.zeros(16, 2, dtype=torch.float64)
    m(x, c)
    torch.testing.assert_close(m.running_mean, x.mean(dim=(0, 2)))
    m.eval()
    ref = TF.batch_norm(x, m.running_mean, m.running_var, training=False)
    torch.testing.assert_close(m(x, c), ref)


def test_adaln_zero_block_starts_as_identity_then_learns():
    torch.manual_seed(0)
    blk = AdaLNZero(8, 3).double()
    branch = torch.nn.Linear(8, 8).double()
    x, c = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    assert torch.equal(blk(x, c, branch), x)
    assert blk.proj.out_features == 24
    gamma, beta, gate = (c @ blk.proj.weight.T + blk.proj.bias).chunk(3, dim=1)  # all zero at init
    assert not gate.any()
    with torch.no_grad():
        blk.proj.bias.normal_()
    gamma, beta, gate = (c @ blk.proj.weight.T + blk.proj.bias).chunk(3, dim=1)
    ref = x + gate[:, None] * branch(TF.layer_norm(x, (8,)) * (1 + gamma[:, None]) + beta[:, None])
    torch.testing.assert_close(blk(x, c, branch), ref)


def test_repr_and_docstrings():
    assert "4, cond_features=2, norm='layer', eps=1e-05, zero_init=False" in repr(AdaptiveNorm(4, 2))
    assert doctest.testmod(an).failed == 0


# --------------------------------------------------------------------------- bad input
def test_rejects_unknown_norm_and_missing_groups():
    with pytest.raises(ValueError, match=re.escape("AdaptiveNorm: norm must be one of ['batch', 'group', "
                                                   "'instance', 'layer', 'rms'], got norm='weight'")):
        AdaptiveNorm(4, 2, norm="weight")
    with pytest.raises(ValueError, match="AdaptiveNorm: norm='group' needs num_groups, got num_groups=None"):
        AdaptiveNorm(4, 2, norm="group")
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        AdaptiveNorm(4, 2, norm="group", num_groups=3)


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_bad_sizes_and_eps(bad):
    with pytest.raises(ValueError, match="num_features"):
        AdaptiveNorm(bad, 2)
    with pytest.raises(ValueError, match="cond_features"):
        AdaLNZero(4, bad)
    with pytest.raises(ValueError, match="AdaptiveNorm: eps must be a finite number > 0"):
        AdaptiveNorm(4, 2, eps=float(bad))


def test_rejects_input_with_the_wrong_feature_axis():
    with pytest.raises(ValueError, match=re.escape("AdaptiveNorm: expected input with 8 features at the last "
                                                   "axis, got input of shape [4, 8, 5]")):
        AdaptiveNorm(8, 3)(torch.randn(4, 8, 5), torch.randn(4, 3))
    with pytest.raises(ValueError, match=re.escape("AdaptiveNorm: expected input with 8 features at dim 1, "
                                                   "got input of shape [4, 5, 8]")):
        AdaptiveNorm(8, 3, norm="instance")(torch.randn(4, 5, 8), torch.randn(4, 3))


@pytest.mark.parametrize("cshape", [(4,), (3, 3), (4, 2), (4, 3, 1)])
def test_rejects_cond_of_the_wrong_shape(cshape):
    with pytest.raises(ValueError, match=re.escape(f"AdaLNZero: expected cond of shape [4, 3] (N, cond_features), "
                                                   f"got cond of shape {list(cshape)} for input of shape [4, 5, 8]")):
        AdaLNZero(8, 3)(torch.randn(4, 5, 8), torch.randn(*cshape), torch.nn.Identity())


def test_rejects_integer_input_or_condition():
    with pytest.raises(TypeError, match="AdaptiveNorm: expected a floating-point input, got dtype torch.int64"):
        AdaptiveNorm(8, 3)(torch.randn(4, 8), torch.ones(4, 3, dtype=torch.long))
