"""Weight Standardization: per-output-channel standardization of convolution weights."""
import numpy as np
import pytest
import torch

from normlib.weight_standardization import WSConv2d, standardize_weight


def _ref(w, eps):
    m = w.mean(dim=(1, 2, 3), keepdim=True)
    v = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (w - m) / torch.sqrt(v + eps)


def test_standardize_weight_matches_formula_and_gradient():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64) * 0.1 + 0.3).requires_grad_()
    ours = standardize_weight(w, 1e-5)
    ref = _ref(w, 1e-5)
    torch.testing.assert_close(ours, ref)
    dy = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(ours, w, dy)[0], torch.autograd.grad(ref, w, dy)[0])


def test_each_filter_has_zero_mean_unit_variance():
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64) * 3 + 7
    s = standardize_weight(w, 1e-12)
    torch.testing.assert_close(s.mean(dim=(1, 2, 3)), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(s.var(dim=(1, 2, 3), unbiased=False), torch.ones(5, dtype=torch.float64))


def test_numpy_worked_example():
    w = np.array([[[1.0, 3.0]], [[10.0, 10.0]]])
    np.testing.assert_allclose(standardize_weight(w, 1e-5), [[[-1 / np.sqrt(1 + 1e-5), 1 / np.sqrt(1 + 1e-5)]], [[0.0, 0.0]]])


def test_ws_conv_equals_conv_with_standardized_weight_and_keeps_state_dict():
    torch.manual_seed(0)
    conv = WSConv2d(3, 6, 3, padding=1, bias=False)
    plain = torch.nn.Conv2d(3, 6, 3, padding=1, bias=False)
    plain.load_state_dict(conv.state_dict(), strict=True)
    x = torch.randn(2, 3, 5, 5)
    expected = torch.nn.functional.conv2d(x, _ref(plain.weight, 1e-5), padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    assert "ws_eps=1e-05" in repr(conv)


def test_ws_conv_output_invariant_to_affine_change_of_weights():
    torch.manual_seed(1)
    conv = WSConv2d(2, 4, 3, bias=False, ws_eps=1e-12)
    x = torch.randn(1, 2, 6, 6)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(5.0).add_(2.0)
    torch.testing.assert_close(conv(x), y, rtol=1e-4, atol=1e-4)


def test_grouped_conv_standardizes_per_output_channel():
    w = torch.randn(6, 2, 3, 3)  # groups=2 conv with 4 input channels
    s = standardize_weight(w)
    torch.testing.assert_close(s[3], _ref(w, 1e-5)[3])


def test_errors():
    with pytest.raises(ValueError, match=r"standardize_weight: expected a weight of shape \[C_out, \.\.\.\] with at least 2 dimensions, got 1D"):
        standardize_weight(torch.ones(3))
    with pytest.raises(ValueError, match="standardize_weight: expected more than 1 value per output channel"):
        standardize_weight(torch.ones(3, 1, 1, 1))
    with pytest.raises(TypeError, match="standardize_weight: expected a floating-point input"):
        standardize_weight(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="WSConv2d: eps must be a finite number > 0"):
        WSConv2d(1, 1, 3, ws_eps=0.0)
