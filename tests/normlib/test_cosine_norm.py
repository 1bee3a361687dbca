"""Cosine Normalization: cos(w, x) in [-1, 1], equal to torch's cosine_similarity."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from normlib.cosine_norm import CosineConv2d, CosineLinear, cosine_conv2d, cosine_linear


def test_hand_example():
    y = cosine_linear(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]]))
    torch.testing.assert_close(y, torch.tensor([[1.0 / 3.0, 0.0]]))


def test_matches_torch_cosine_similarity():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g)
    ref = F.cosine_similarity(x[:, None, :], w[None, :, :], dim=-1)
    torch.testing.assert_close(cosine_linear(x, w), ref)
    torch.testing.assert_close(cosine_linear(x, w), F.normalize(x, dim=1) @ F.normalize(w, dim=1).T)


@settings(max_examples=50, deadline=None)
@given(log_scale=st.floats(-6, 8), seed=st.integers(0, 2**16))
def test_outputs_lie_in_minus_one_one_and_ignore_input_scale(log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    y = cosine_linear(x, w)
    ys = cosine_linear(x * 10.0 ** log_scale, w)
    assert (ys.abs() <= 1.0 + 1e-12).all()
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)


def test_same_direction_different_norms_give_same_output():
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[1.0, -2.0, 0.5]])
    torch.testing.assert_close(cosine_linear(x, w), cosine_linear(100.0 * x, w))


def test_zero_input_gives_zero_not_nan():
    y = cosine_linear(torch.zeros(2, 3), torch.ones(4, 3))
    torch.testing.assert_close(y, torch.zeros(2, 4))
    torch.testing.assert_close(y[:, 0], F.cosine_similarity(torch.zeros(2, 3), torch.ones(2, 3)))


def test_conv_matches_unfolded_patches():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 3, 6, 5, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    y = cosine_conv2d(x, w, padding=1)
    patches = F.unfold(x, 3, padding=1).transpose(1, 2)  # (N, L, C*k*k)
    ref = cosine_linear(patches, w.reshape(4, -1)).transpose(1, 2).reshape(y.shape)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    assert (y.abs() <= 1 + 1e-6).all()


def test_modules_forward_and_backward():
    torch.manual_seed(0)
    lin, conv = CosineLinear(5, 3), CosineConv2d(2, 4, 3)
    y = lin(torch.randn(6, 5))
    assert y.shape == (6, 3)
    y.sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    assert conv(torch.randn(1, 2, 5, 5)).shape == (1, 4, 3, 3)


def test_errors():
    w = torch.ones(3, 4)
    with pytest.raises(ValueError, match=r"cosine_linear: Expected input of shape \[\*, 4\] .* got input of shape \[2, 5\]"):
        cosine_linear(torch.ones(2, 5), w)
    with pytest.raises(ValueError, match=r"expected a 2-D weight .* got weight of shape \[4\]"):
        cosine_linear(torch.ones(2, 4), torch.ones(4))
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        cosine_linear(torch.ones(2, 4), w, eps=0.0)
    with pytest.raises(TypeError, match="floating-point input"):
        cosine_linear(torch.ones(2, 4, dtype=torch.int64), w)
    with pytest.raises(ValueError, match=r"expected 4D input .* \(got 3D input of shape \[3, 5, 5\]\)"):
        cosine_conv2d(torch.ones(3, 5, 5), torch.ones(2, 3, 3, 3))
    with pytest.raises(ValueError, match="Expected input with 3 channels"):
        cosine_conv2d(torch.ones(1, 2, 5, 5), torch.ones(2, 3, 3, 3))
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        CosineLinear(0, 3)
