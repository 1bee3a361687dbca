"""ConvNeXt's channels-only LayerNorm: the set S, the op and the module against plain torch."""
from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
import torch

import normlib.channel_norm as cn
import normlib.sets as sets
from normlib.channel_norm import ChannelLayerNorm, channel_layer_norm
from normlib.core import normalize
from normlib.sets import ChannelSet, channel_set, group_set, layer_set


def permute_ln(x, weight=None, bias=None, eps=1e-6):
    """The plain-torch idiom: channels last, LayerNorm(C), channels first again."""
    C = x.shape[1]
    perm = (0, *range(2, x.ndim), 1)
    inv = (0, x.ndim - 1, *range(1, x.ndim - 1))
    return torch.nn.functional.layer_norm(x.permute(perm), (C,), weight, bias, eps).permute(inv)


# --------------------------------------------------------------------------- the set S
def test_channel_set_reduces_the_channel_axis_only():
    S = channel_set()
    assert isinstance(S, ChannelSet)
    assert S.reduce_axes((2, 3, 4, 5)) == (1,)
    assert S.stat_shape((2, 3, 4, 5)) == (2, 4, 5)
    assert S.set_size((2, 3, 4, 5)) == 3
    assert S.describe(4) == "C per N×H×W"


def test_channel_set_labels_one_set_per_sample_and_position():
    lab = channel_set().labels((2, 3, 4))
    # equal along C, different for every (n, position)
    assert (lab == lab[:, :1, :]).all()
    assert len(np.unique(lab)) == 2 * 4
    mask = channel_set().mask((2, 3, 4), (1, 2, 3))
    assert mask.sum() == 3 and mask[1, :, 3].all()


def test_channel_set_differs_from_layer_and_group_norm_sets():
    shape = (2, 3, 4)
    sizes = {"channel": channel_set().set_size(shape), "LN[C,HW]": layer_set(2).set_size(shape),
             "GN(1)": group_set(1).set_size(shape)}
    assert sizes == {"channel": 3, "LN[C,HW]": 12, "GN(1)": 12}


def test_channel_set_rejects_batch_or_groups_and_1d_input():
    with pytest.raises(ValueError, match="no batch axis and no groups, got over_batch=True"):
        ChannelSet("x", over_batch=True)
    with pytest.raises(ValueError, match=r"at least 2 dimensions \(N, C, \.\.\.\), got 1D input"):
        channel_set().reduce_axes((5,))


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 7), (3, 4, 5, 6), (2, 3, 2, 3, 4)])
def test_core_over_channel_set_equals_permuted_layer_norm(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 2
    y, m = normalize(x, channel_set(), 1e-6)
    torch.testing.assert_close(y, permute_ln(x), rtol=1e-12, atol=1e-12)
    assert m.count == shape[1]


# --------------------------------------------------------------------------- op and module
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(2, 6), (2, 6, 5), (3, 8, 4, 5)])
def test_functional_matches_permute_layernorm_permute(shape, dtype, tol):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g, dtype=dtype) * 2 + 1
    w = torch.randn(shape[1], generator=g, dtype=dtype)
    b = torch.randn(shape[1], generator=g, dtype=dtype)
    torch.testing.assert_close(channel_layer_norm(x, w, b), permute_ln(x, w, b), rtol=tol, atol=tol)


def test_numpy_in_numpy_out():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
    y = channel_layer_norm(x, np.ones(3), np.zeros(3))
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, permute_ln(torch.from_numpy(x)).numpy(), atol=1e-12)


def test_gradients_match_plain_torch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(channel_layer_norm(x, w, b), (x, w, b), dy)
    ref = torch.autograd.grad(permute_ln(x, w, b), (x, w, b), dy)
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_module_state_loads_from_torch_layernorm_and_matches():
    ref = torch.nn.LayerNorm(6, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    m = ChannelLayerNorm(6)
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(m(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), rtol=2e-5, atol=2e-5)
    assert "ChannelLayerNorm(6, eps=1e-06, elementwise_affine=True, bias=True)" == repr(m)


def test_module_without_affine_or_bias():
    assert ChannelLayerNorm(3, elementwise_affine=False).weight is None
    m = ChannelLayerNorm(3, bias=False)
    assert m.bias is None and list(m.state_dict()) == ["weight"]


def test_a_position_changes_only_its_own_outputs():
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 2, 1, 1] += 5.0  # one entry (a constant over C would be removed by the centring)
    changed = (ChannelLayerNorm(4).double()(x2) - ChannelLayerNorm(4).double()(x)).abs() > 1e-12
    assert changed.sum() == 4 and changed[0, :, 1, 1].all()


def test_docstring_examples_run():
    for mod in (cn, sets):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


# --------------------------------------------------------------------------- bad input
def test_rejects_non_float_and_too_few_dims():
    with pytest.raises(TypeError, match=r"channel_layer_norm: expected a floating-point input, got dtype torch.int64"):
        channel_layer_norm(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"channel_layer_norm: expected input with at least 2 dimensions .*"
                                         r"got 1D input of shape \[3\]"):
        channel_layer_norm(torch.ones(3))


def test_rejects_parameters_of_the_wrong_shape():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=re.escape("channel_layer_norm: expected weight of shape [3], got "
                                                   "weight of shape [4] for input of shape [2, 3, 4, 4]")):
        channel_layer_norm(x, torch.ones(4))
    with pytest.raises(ValueError, match=re.escape("expected bias of shape [3], got bias of shape [3, 1]")):
        channel_layer_norm(x, None, torch.ones(3, 1))


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), "1e-5"])
def test_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="channel_layer_norm: eps must be a finite number > 0"):
        channel_layer_norm(torch.randn(2, 3), eps=eps)
    with pytest.raises(ValueError, match="ChannelLayerNorm: eps must be a finite number > 0"):
        ChannelLayerNorm(3, eps=eps)


def test_module_rejects_channel_mismatch_and_bad_count():
    with pytest.raises(ValueError, match=re.escape("ChannelLayerNorm: expected input with 3 channels at dim 1, "
                                                   "got input of shape [2, 4, 5, 5]")):
        ChannelLayerNorm(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="num_channels"):
        ChannelLayerNorm(0)
    with pytest.raises(TypeError, match="num_channels"):
        ChannelLayerNorm(3.0)
