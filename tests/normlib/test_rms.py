"""normlib.rms against torch.nn.RMSNorm / torch.nn.functional.rms_norm."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normlib.rms import RMSNorm, default_eps, rms_norm
from normlib.functional import layer_norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,norm", [((4, 6), [6]), ((2, 3, 5), [3, 5]), ((2, 3, 4, 5), [5])])
def test_rms_norm_matches_torch_values_and_gradients(dtype, shape, norm):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 3 + 2).requires_grad_()
    w = torch.randn(norm, generator=g, dtype=dtype).requires_grad_()
    y = rms_norm(x, norm, w)
    ref = torch.nn.functional.rms_norm(x, norm, w)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)
    dy = torch.randn(shape, generator=g, dtype=dtype)
    gx, gw = torch.autograd.grad(y, (x, w), dy)
    rx, rw = torch.autograd.grad(ref, (x, w), dy)
    torch.testing.assert_close(gx, rx, rtol=10 * tol, atol=10 * tol)
    torch.testing.assert_close(gw, rw, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_half_precision_keeps_dtype_and_matches_torch(dtype):
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = rms_norm(x, [8])
    assert y.dtype == dtype
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x, [8]))


def test_default_eps_is_that_of_the_computation_dtype():
    assert default_eps(torch.float32) == torch.finfo(torch.float32).eps
    assert default_eps(torch.float16) == torch.finfo(torch.float32).eps  # computed in float32
    assert default_eps(torch.float64) == torch.finfo(torch.float64).eps
    # on an all-zero row the eps decides nothing, but a tiny row shows it is used
    x = torch.full((1, 4), 1e-4, dtype=torch.float32)
    torch.testing.assert_close(rms_norm(x, [4]), torch.nn.functional.rms_norm(x, [4]))


def test_rms_norm_numpy_worked_example():
    y = rms_norm(np.array([[3.0, 4.0]]), [2], eps=1e-12)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, [[3 / np.sqrt(12.5), 4 / np.sqrt(12.5)]])


def test_module_matches_torch_module_state_dict_and_repr():
    torch.manual_seed(0)
    ours, ref = RMSNorm([3, 4]), torch.nn.RMSNorm([3, 4])
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    with torch.no_grad():
        ref.weight.copy_(torch.randn(3, 4))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ours(x), ref(x))
    assert repr(ours) == repr(ref)
    assert list(RMSNorm(4, elementwise_affine=False).state_dict()) == []
    assert RMSNorm(4, elementwise_affine=False).weight is None


def test_module_device_dtype_and_eps():
    m = RMSNorm(5, eps=1e-3, dtype=torch.float64)
    assert m.weight.dtype == torch.float64 and m.eps == 1e-3
    x = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), torch.nn.RMSNorm(5, eps=1e-3, dtype=torch.float64)(x))


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(0.01, 100.0), shift=st.floats(-5.0, 5.0).filter(lambda s: abs(s) > 0.5))
def test_rescaling_invariant_but_not_recentring_invariant(scale, shift):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = rms_norm(x, [16], eps=1e-12)
    torch.testing.assert_close(rms_norm(scale * x, [16], eps=1e-12), y)
    assert (rms_norm(x + shift, [16], eps=1e-12) - y).abs().max() > 1e-2


def test_equals_layer_norm_on_zero_mean_rows():
    x = torch.randn(3, 10, dtype=torch.float64)
    x = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(rms_norm(x, [10], eps=1e-5), layer_norm(x, [10], eps=1e-5))


def test_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"rms_norm: Given normalized_shape=\[4\], expected input with shape \[\*, 4\], but got input of size \[2, 3\]"):
        rms_norm(torch.randn(2, 3), [4])
    with pytest.raises(ValueError, match=r"rms_norm: expected weight of shape \[3\], got weight of shape \[2\]"):
        rms_norm(torch.randn(2, 3), [3], torch.ones(2))
    with pytest.raises(TypeError, match="rms_norm: expected a floating-point input"):
        rms_norm(torch.arange(6).reshape(2, 3), [3])
    with pytest.raises(ValueError, match="rms_norm: eps must be a finite number > 0"):
        rms_norm(torch.randn(2, 3), [3], eps=-1.0)
    with pytest.raises(ValueError, match="rms_norm: normalized_shape must have at least one dimension"):
        rms_norm(torch.randn(2, 3), [])
    with pytest.raises(ValueError, match=r"RMSNorm: normalized_shape\[0\] must be a positive integer, got 0 \(int\)"):
        RMSNorm([0])
    with pytest.raises(ValueError, match=r"RMSNorm: normalized_shape must have at least one dimension, got \[\]"):
        RMSNorm([])
    with pytest.raises(ValueError, match="RMSNorm: eps must be a finite number > 0"):
        RMSNorm(3, eps=0.0)
