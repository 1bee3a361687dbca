"""Empty inputs behave as in torch: empty outputs, empty or zero gradients (issue 16, item 5)."""
from __future__ import annotations

import pytest
import torch

import normlib.functional as NF
import normlib.nn as nnn
from normlib.rms import rms_norm


def _grads(f, x_shape, p_shapes):
    x = torch.randn(x_shape, requires_grad=True)
    params = [torch.randn(s, requires_grad=True) for s in p_shapes]
    y = f(x, *params)
    y.sum().backward()
    return y, x.grad, [p.grad for p in params]


CASES = [  # name, normlib op, torch op, input shape, parameter shapes
    ("layer_norm", lambda x, w, b: NF.layer_norm(x, (5,), w, b),
     lambda x, w, b: torch.nn.functional.layer_norm(x, (5,), w, b), (0, 5), [(5,), (5,)]),
    ("rms_norm", lambda x, w: rms_norm(x, (5,), w), lambda x, w: torch.nn.functional.rms_norm(x, (5,), w),
     (0, 5), [(5,)]),
    ("group_norm", lambda x, w, b: NF.group_norm(x, 2, w, b),
     lambda x, w, b: torch.nn.functional.group_norm(x, 2, w, b), (0, 4, 3), [(4,), (4,)]),
    ("instance_norm H=0", lambda x, w, b: NF.instance_norm(x, weight=w, bias=b),
     lambda x, w, b: torch.nn.functional.instance_norm(x, weight=w, bias=b), (2, 3, 0), [(3,), (3,)]),
    ("batch_norm N=0", lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True),
     lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True), (0, 3, 4), [(3,), (3,)]),
]


@pytest.mark.parametrize("name,ours,theirs,shape,pshapes", CASES, ids=[c[0] for c in CASES])
def test_backward_of_an_empty_input_gives_torchs_empty_and_zero_gradients(name, ours, theirs, shape, pshapes):
    y, dx, dps = _grads(ours, shape, pshapes)
    y_t, dx_t, dps_t = _grads(theirs, shape, pshapes)
    assert y.shape == y_t.shape and dx.shape == dx_t.shape
    for g, g_t in zip(dps, dps_t):
        torch.testing.assert_close(g, g_t)


def test_instance_norm_module_with_no_positions_leaves_the_running_statistics_alone():
    ours = nnn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    theirs = torch.nn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    x = torch.randn(2, 3, 0)
    assert ours(x).shape == theirs(x).shape == (2, 3, 0)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


def test_instance_norm_with_one_position_still_raises_as_torch_does():
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        NF.instance_norm(torch.randn(2, 3, 1))


def test_group_norm_of_no_channels_is_an_empty_layer_as_in_torch():
    ours, theirs = nnn.GroupNorm(1, 0), torch.nn.GroupNorm(1, 0)
    assert ours.weight.shape == theirs.weight.shape == (0,)
    x = torch.randn(2, 0, 3, requires_grad=True)
    y = ours(x)
    y.sum().backward()
    assert y.shape == theirs(x).shape and x.grad.shape == x.shape
    with pytest.raises(ValueError, match="GroupNorm: num_channels must be a non-negative integer, got -1"):
        nnn.GroupNorm(1, -1)
