"""Tests of normlib.filter_response_norm: FRN + TLU against the paper's formula in plain torch."""
import numpy as np
import pytest
import torch

from normlib.filter_response_norm import FilterResponseNorm2d, filter_response_norm, frn_set
from normlib.sets import StatSet, instance_set


def _reference(x, w, b, tau, eps):
    """Singh & Krishnan (2019), Algorithm 1: nu2 = mean(x^2) over H, W; no mean subtracted."""
    nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
    v = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    y = v(w) * x * torch.rsqrt(nu2 + eps) + v(b)
    return torch.max(y, v(tau))


def test_matches_reference_forward_and_backward():
    torch.manual_seed(0)
    m = FilterResponseNorm2d(3).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1), m.tau.uniform_(-0.5, 0.5)
    x = (torch.randn(4, 3, 3, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in (m.weight, m.bias, m.tau)]
    y, y_ref = m(x), _reference(x_ref, *params, m.eps)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
    for p, q in zip((m.weight, m.bias, m.tau), params):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10)


def test_set_is_instance_norms_and_batch_independent_and_numpy():
    S = frn_set()
    assert isinstance(S, StatSet)
    shape = (3, 4, 5)
    assert (S.labels(shape) == instance_set().labels(shape)).all()
    x = torch.randn(5, 2, 3, 3)
    m = FilterResponseNorm2d(2)
    torch.testing.assert_close(m(x)[:1], m(x[:1]))  # one image alone: the same output
    m.eval()
    torch.testing.assert_close(m(x)[:1], m(x[:1]))
    out = filter_response_norm(x.double().numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, filter_response_norm(x.double()).numpy(), rtol=1e-12)


def test_no_mean_subtracted_unlike_instance_norm():
    x = torch.full((1, 1, 2, 2), 3.0)  # a constant channel: IN gives 0, FRN gives ~1
    torch.testing.assert_close(filter_response_norm(x), torch.ones_like(x), rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip():
    m = FilterResponseNorm2d(3)
    with torch.no_grad():
        m.tau.fill_(0.25)
    again = FilterResponseNorm2d(3)
    again.load_state_dict(m.state_dict(), strict=True)
    assert sorted(m.state_dict()) == ["bias", "tau", "weight"]
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(m(x), again(x))
    assert sorted(FilterResponseNorm2d(3, tlu=False).state_dict()) == ["bias", "weight"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        FilterResponseNorm2d(3, eps=0.0)
    with pytest.raises(ValueError, match="num_features must be a positive integer"):
        FilterResponseNorm2d(0)
    m = FilterResponseNorm2d(3)
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input of shape \[2, 3\]\)"):
        m(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"expected input with 3 channels at dim 1, got input of shape \[2, 4, 2, 2\]"):
        m(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match=r"expected input with at least 3 dimensions"):
        filter_response_norm(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"expected tau of shape \[3\], got tau of shape \[2\]"):
        filter_response_norm(torch.randn(2, 3, 2, 2), tau=torch.zeros(2))
    with pytest.raises(TypeError, match="expected a floating-point input"):
        filter_response_norm(torch.ones(2, 3, 2, 2, dtype=torch.int64))
