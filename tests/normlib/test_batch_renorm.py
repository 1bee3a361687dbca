"""Tests of normlib.batch_renorm: Batch Renorm against a plain-torch reference and against BN."""
import pytest
import torch
import torch.nn.functional as TF

import normlib.nn as nnn
from normlib.batch_renorm import BatchRenorm2d, renorm_limits


def _reference_brn(x, rm, rv, w, b, r_max, d_max, eps, momentum):
    """Ioffe (2017), Algorithm 1, in plain torch: returns (y, new running mean, new running var)."""
    mu = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    sigma_b = torch.sqrt(var + eps)
    sigma = torch.sqrt(rv + eps)
    r = (sigma_b / sigma).detach().clamp(1 / r_max, r_max)
    d = ((mu - rm) / sigma).detach().clamp(-d_max, d_max)
    v = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    x_hat = (x - v(mu)) / v(sigma_b) * v(r) + v(d)
    n = x.numel() / x.shape[1]
    new_rm = (1 - momentum) * rm + momentum * mu.detach()
    new_rv = (1 - momentum) * rv + momentum * var.detach() * n / (n - 1)
    return v(w) * x_hat + v(b), new_rm, new_rv


def _module(C=3, **kw):
    torch.manual_seed(1)
    m = BatchRenorm2d(C, **kw).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 2)
        m.bias.uniform_(-1, 1)
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    return m


@pytest.mark.parametrize("r_max, d_max", [(1.0, 0.0), (1.5, 0.2), (3.0, 5.0)])
def test_forward_backward_and_running_stats_match_reference(r_max, d_max):
    m = _module(r_max=r_max, d_max=d_max)
    x = (torch.randn(4, 3, 3, 3, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    rm, rv = m.running_mean.clone(), m.running_var.clone()
    w = m.weight.detach().clone().requires_grad_()
    b = m.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y_ref, rm_ref, rv_ref = _reference_brn(x_ref, rm, rv, w, b, r_max, d_max, m.eps, m.momentum)
    y = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m.running_mean, rm_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.running_var, rv_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(m.weight.grad, w.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(m.bias.grad, b.grad, rtol=1e-9, atol=1e-10)


def test_r1_d0_is_batch_norm_bit_for_bit():
    torch.manual_seed(0)
    brn = BatchRenorm2d(4, r_max=1.0, d_max=0.0)
    bn = nnn.BatchNorm2d(4)
    with torch.no_grad():
        for p in (brn.weight, brn.bias):
            p.uniform_(-2, 2)
    bn.load_state_dict(brn.state_dict())
    for _ in range(3):
        x = torch.randn(2, 4, 3, 3) * 3 + 1
        assert torch.equal(brn(x), bn(x))
    assert torch.equal(brn.running_mean, bn.running_mean)
    assert torch.equal(brn.running_var, bn.running_var)
    torch_bn = torch.nn.BatchNorm2d(4)
    torch_bn.load_state_dict(brn.state_dict())
    brn.eval(), torch_bn.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(brn(x), torch_bn(x), rtol=1e-5, atol=1e-5)


def test_unclipped_training_output_is_the_running_statistics_output():
    m = _module(r_max=1e6, d_max=1e6)
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64) * 3 - 1
    expected = TF.batch_norm(x, m.running_mean.clone(), m.running_var.clone(), m.weight, m.bias, False)
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_schedule_warmup_then_ramp():
    assert renorm_limits(4, 3.0, 5.0, 5, 10) == (1.0, 0.0)
    assert renorm_limits(10, 3.0, 5.0, 5, 10) == (2.0, 2.5)
    assert renorm_limits(100, 3.0, 5.0, 5, 10) == (3.0, 5.0)
    m = BatchRenorm2d(2, warmup_steps=1, ramp_steps=2)
    assert m.limits() == (1.0, 0.0)
    m(torch.randn(4, 2, 2, 2))
    assert m.limits() == (1.0, 0.0)
    m(torch.randn(4, 2, 2, 2))
    assert m.limits() == (2.0, 2.5)
    assert torch.all(m.last_r == 1) and torch.all(m.last_d == 0)


def test_state_dict_round_trip_with_torch_batch_norm():
    m = _module().float()
    m(torch.randn(4, 3, 2, 2))
    bn = torch.nn.BatchNorm2d(3)
    bn.load_state_dict(m.state_dict(), strict=True)
    again = BatchRenorm2d(3)
    again.load_state_dict(bn.state_dict(), strict=True)
    for k, v in m.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"r_max": 0.5}, "r_max must be >= 1"),
        ({"d_max": -1.0}, "d_max must be >= 0"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"ramp_steps": 1.5}, "ramp_steps must be an integer >= 0"),
        ({"momentum": None}, "momentum must be a number in"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        BatchRenorm2d(3, **kw)


def test_bad_inputs():
    m = BatchRenorm2d(3)
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input of shape \[2, 3, 4\]\)"):
        m(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected input with 3 channels at dim 1, got input of shape \[2, 5, 1, 1\]"):
        m(torch.randn(2, 5, 1, 1))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        m(torch.randn(1, 3, 1, 1))
    with pytest.raises(TypeError, match="expected a floating-point input"):
        m(torch.ones(2, 3, 2, 2, dtype=torch.long))
