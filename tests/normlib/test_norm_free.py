"""Tests of normlib.norm_free: SkipInit, Fixup's rule, scaled WS and adaptive gradient clipping."""
import math

import pytest
import torch
from torch import nn

from normlib.norm_free import (
    RELU_GAIN,
    SkipInit,
    adaptive_grad_clip_,
    fixup_init_,
    fixup_scale,
    scaled_standardize_weight,
    unitwise_norm,
)


def _agc_reference(params, clipping, eps):
    """AGC as Brock et al. (2021) write it, one unit at a time in plain torch."""
    out = []
    for p in params:
        g = p.grad.clone()
        units = [...] if p.ndim <= 1 else range(p.shape[0])
        for i in units:
            w_norm = max(float(p.detach()[i].norm()), eps)
            g_norm = float(g[i].norm())
            if g_norm / w_norm > clipping:
                g[i] = g[i] * (clipping * w_norm / g_norm)
        out.append(g)
    return out


def test_agc_matches_unit_by_unit_reference():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, 3, 3, 3)), nn.Parameter(torch.randn(4, 6)),
              nn.Parameter(torch.zeros(4)), nn.Parameter(torch.randn(()))]
    for p in params:
        p.grad = torch.randn_like(p) * torch.logspace(-4, 1, p.numel()).reshape(p.shape)
    expected = _agc_reference(params, 0.05, 1e-3)
    n = adaptive_grad_clip_(params, clipping=0.05, eps=1e-3)
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-9)
    ratio = unitwise_norm(params[0].grad) / unitwise_norm(params[0]).clamp_min(1e-3)
    assert float(ratio.max()) <= 0.05 * (1 + 1e-5)
    assert 0 < n <= 5 + 4 + 1 + 1


def test_agc_skips_parameters_without_grad_and_small_grads():
    p = nn.Parameter(torch.ones(3, 2))
    q = nn.Parameter(torch.ones(2))
    p.grad = torch.full((3, 2), 1e-4)
    assert adaptive_grad_clip_([p, q], clipping=0.01) == 0
    torch.testing.assert_close(p.grad, torch.full((3, 2), 1e-4))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "0.1", True])
def test_agc_bad_clipping(bad):
    with pytest.raises(ValueError, match="clipping must be a finite number > 0"):
        adaptive_grad_clip_([], clipping=bad)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        adaptive_grad_clip_([], eps=0.0)


def test_skipinit_starts_as_identity_and_learns_alpha():
    block = SkipInit(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)))
    x = torch.randn(3, 4)
    assert torch.equal(block(x), x)
    block(x).pow(2).sum().backward()
    assert block.alpha.grad is not None and float(block.alpha.grad.abs()) > 0
    again = SkipInit(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), alpha=0.5)
    again.load_state_dict(block.state_dict(), strict=True)
    assert float(again.alpha) == 0.0 and torch.equal(again(x), x)
    with pytest.raises(ValueError, match=r"maps input of shape \[3, 4\] to shape \[3, 2\]"):
        SkipInit(nn.Linear(4, 2))(x)


def test_fixup_scale_and_init():
    assert fixup_scale(16, 2) == 0.25
    assert fixup_scale(8, 3) == pytest.approx(8 ** -0.25)
    layers = [nn.Linear(4, 4), nn.Linear(4, 4)]
    w0 = layers[0].weight.detach().clone()
    fixup_init_(layers, num_branches=16)
    torch.testing.assert_close(layers[0].weight, w0 * 0.25)
    assert torch.all(layers[1].weight == 0) and torch.all(layers[1].bias == 0)
    with pytest.raises(ValueError, match="layers_per_branch must be >= 2"):
        fixup_scale(4, 1)
    with pytest.raises(ValueError, match="num_branches must be a positive integer"):
        fixup_scale(0, 2)
    with pytest.raises(ValueError, match=r"branch layer 1 \(ReLU\) has no weight"):
        fixup_init_([nn.Linear(2, 2), nn.ReLU()], 4)


def test_scaled_ws_preserves_variance_after_relu():
    torch.manual_seed(0)
    w = torch.randn(256, 512) * 3 + 1
    w_hat = scaled_standardize_weight(w)
    torch.testing.assert_close(w_hat.mean(1), torch.zeros(256), atol=1e-6, rtol=0)
    torch.testing.assert_close(w_hat.pow(2).sum(1), torch.full((256,), RELU_GAIN**2), rtol=1e-3, atol=0)
    z = torch.randn(4096, 512)
    out = torch.relu(z) @ w_hat.T
    # relu(z) has mean 1/sqrt(2 pi) but W_hat's rows have mean 0, so only its variance passes
    assert abs(float(out.var()) - 1.0) < 0.05
    assert RELU_GAIN == pytest.approx(math.sqrt(2 / (1 - 1 / math.pi)))
    with pytest.raises(ValueError, match="expected a weight of shape"):
        scaled_standardize_weight(torch.randn(4))
