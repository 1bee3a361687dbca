"""Weight Normalization: numbers, names and dim convention of torch's parametrization."""
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import parametrize

from normlib.weight_norm import data_dependent_init, remove_weight_norm, weight_norm, weight_norm_weight


def _pair(make, dim):
    torch.manual_seed(0)
    ours = weight_norm(make(), dim=dim)
    torch.manual_seed(0)
    ref = P.weight_norm(make(), dim=dim)
    return ours, ref


@pytest.mark.parametrize("dim", [0, 1, None, -2])
@pytest.mark.parametrize("make,x_shape", [
    (lambda: nn.Linear(5, 3), (4, 5)),
    (lambda: nn.Conv2d(2, 3, 3), (2, 2, 6, 6)),
    (lambda: nn.Conv1d(2, 4, 3), (2, 2, 7)),
])
def test_forward_and_gradients_match_torch_weight_norm(make, x_shape, dim):
    ours, ref = _pair(make, dim)
    g_o, v_o = ours.parametrizations.weight.original0, ours.parametrizations.weight.original1
    g_r, v_r = ref.parametrizations.weight.original0, ref.parametrizations.weight.original1
    assert g_o.shape == g_r.shape and v_o.shape == v_r.shape
    torch.testing.assert_close(g_o, g_r)
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # move g away from ||v|| so the test sees g
        g_o.mul_(1.7)
        g_r.mul_(1.7)
    y_o, y_r = ours(x), ref(x)
    torch.testing.assert_close(y_o, y_r, rtol=1e-5, atol=1e-6)
    (y_o ** 2).sum().backward()
    (y_r ** 2).sum().backward()
    torch.testing.assert_close(g_o.grad, g_r.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(v_o.grad, v_r.grad, rtol=1e-4, atol=1e-6)


def test_state_dict_loads_both_ways_with_torch():
    ours, ref = _pair(lambda: nn.Linear(4, 2), 0)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(ref.state_dict(), strict=True)


def test_registration_leaves_the_function_unchanged():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    w0 = lin.weight.detach().clone()
    weight_norm(lin)
    torch.testing.assert_close(lin.weight, w0)


def test_hand_example():
    v = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    g = torch.tensor([[2.0], [0.5]])
    w = weight_norm_weight(v, g, dim=0)
    torch.testing.assert_close(w, torch.tensor([[1.2, 1.6], [0.5 / 2 ** 0.5, -0.5 / 2 ** 0.5]]))
    w_all = weight_norm_weight(v, torch.tensor(3.0), dim=None)
    torch.testing.assert_close(torch.linalg.vector_norm(w_all), torch.tensor(3.0))


def test_weight_has_norm_g_per_output_unit():
    torch.manual_seed(0)
    conv = weight_norm(nn.Conv2d(3, 5, 3))
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(torch.arange(1.0, 6.0).reshape(5, 1, 1, 1))
    norms = torch.linalg.vector_norm(conv.weight, dim=(1, 2, 3))
    torch.testing.assert_close(norms, torch.arange(1.0, 6.0))


def test_scaling_v_does_not_change_the_weight():
    torch.manual_seed(0)
    lin = weight_norm(nn.Linear(4, 3))
    w = lin.weight.detach().clone()
    with torch.no_grad():
        lin.parametrizations.weight.original1.mul_(37.0)
    torch.testing.assert_close(lin.weight, w)


def test_zero_norm_v_gives_zero_weight_not_nan():
    v = torch.zeros(2, 3)
    v[1] = torch.tensor([1.0, 2.0, 2.0])
    w = weight_norm_weight(v, torch.ones(2, 1))
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w[0], torch.zeros(3))
    torch.testing.assert_close(w[1], torch.tensor([1.0, 2.0, 2.0]) / 3)


def test_dim_out_of_range_raises_before_registering():
    lin = nn.Linear(3, 2)
    with pytest.raises(IndexError, match=r"weight_norm: dim out of range: expected dim in \[-2, 1\] or None .* got dim=2"):
        weight_norm(lin, dim=2)
    assert not parametrize.is_parametrized(lin)


def test_dim_minus_one_is_rejected_as_ambiguous():
    with pytest.raises(ValueError, match="dim=-1 is ambiguous.*dim=None or dim=1"):
        weight_norm(nn.Linear(3, 2), dim=-1)


def test_g_of_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"expected g of shape \[2, 1\] .* got g of shape \[2\]"):
        weight_norm_weight(torch.ones(2, 3), torch.ones(2))


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="floating-point"):
        weight_norm_weight(torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 1))
    with pytest.raises(ValueError, match="eps must be"):
        weight_norm_weight(torch.ones(2, 3), torch.ones(2, 1), eps=0.0)
    with pytest.raises(AttributeError, match="no floating-point parameter named 'kernel'"):
        weight_norm(nn.Linear(3, 2), name="kernel")
    with pytest.raises(TypeError, match="expected an nn.Module"):
        weight_norm(torch.ones(3))
    lin = weight_norm(nn.Linear(3, 2))
    with pytest.raises(AttributeError, match="already parametrized"):
        weight_norm(lin)


@pytest.mark.parametrize("eps", [float("inf"), float("nan"), -1.0, True, "1e-12"], ids=repr)
def test_eps_has_the_one_check_of_every_op(eps):
    """weight_norm's own eps check accepted inf (and a NaN slipped through as 'not > 0' is False);
    it now uses the shared check, at call time and when the parametrization is registered."""
    match = re.escape(f"weight_norm: eps must be a finite number > 0, got eps={eps!r}")
    with pytest.raises(ValueError, match=match):
        weight_norm_weight(torch.ones(2, 3), torch.ones(2, 1), eps=eps)
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=match):
        weight_norm(lin, eps=eps)
    assert not hasattr(lin, "parametrizations")  # nothing registered
    with pytest.raises(ValueError, match=re.escape("data_dependent_init: eps must be a finite number > 0")):
        data_dependent_init(weight_norm(nn.Linear(3, 2)), torch.randn(4, 3), eps=eps)


def test_remove_weight_norm_keeps_the_weight():
    torch.manual_seed(0)
    lin = weight_norm(nn.Linear(4, 3))
    with torch.no_grad():
        lin.parametrizations.weight.original0.mul_(2.0)
    w = lin.weight.detach().clone()
    remove_weight_norm(lin)
    assert not parametrize.is_parametrized(lin)
    torch.testing.assert_close(lin.weight, w)
    with pytest.raises(ValueError, match="not parametrized"):
        remove_weight_norm(lin)


@pytest.mark.parametrize("make,x_shape", [(lambda: nn.Linear(8, 5), (64, 8)), (lambda: nn.Conv2d(3, 4, 3), (8, 3, 6, 6))])
def test_data_dependent_init_gives_zero_mean_unit_variance(make, x_shape):
    torch.manual_seed(0)
    layer = weight_norm(make())
    x = 3.0 * torch.randn(x_shape) + 1.0
    data_dependent_init(layer, x)
    with torch.no_grad():
        y = layer(x)
    axes = [0] + list(range(2, y.ndim))
    torch.testing.assert_close(y.mean(dim=axes), torch.zeros(y.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=axes, unbiased=False), torch.ones(y.shape[1]), atol=1e-4, rtol=0)


def test_data_dependent_init_errors():
    with pytest.raises(ValueError, match="not weight-normalized"):
        data_dependent_init(nn.Linear(3, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="dim=0"):
        data_dependent_init(weight_norm(nn.Linear(3, 2), dim=None), torch.randn(4, 3))
    with pytest.raises(ValueError, match="no bias"):
        data_dependent_init(weight_norm(nn.Linear(3, 2, bias=False)), torch.randn(4, 3))
    with pytest.raises(ValueError, match="more than 1 value per unit"):
        data_dependent_init(weight_norm(nn.Linear(3, 2)), torch.randn(1, 3))


@pytest.mark.parametrize("x", [torch.randn(1, 3), torch.randn(4, 5)], ids=["one-sample", "wrong-width"])
def test_data_dependent_init_failure_leaves_g_and_bias_unchanged(x):
    layer = weight_norm(nn.Linear(3, 2))
    g = layer.parametrizations.weight.original0
    g_before, b_before = g.detach().clone(), layer.bias.detach().clone()
    with pytest.raises((ValueError, RuntimeError)):
        data_dependent_init(layer, x)
    torch.testing.assert_close(g.detach(), g_before, rtol=0, atol=0)
    torch.testing.assert_close(layer.bias.detach(), b_before, rtol=0, atol=0)
