"""Float32 accuracy when the input carries a large offset.

With an offset ``c`` and spread ``sigma``, float32 can only hold each input to
``ulp(c)``; the exact mean is not a float32 number either, so the best any
float32 implementation that forms ``x - mean`` can do is an output error of
about ``ulp(c) / sigma``.  normlib's two-pass statistics (mean first, then the
mean squared deviation) stay within a few of those ulps, and the variance
within a few ``ulp(c)^2 / sigma^2`` relative.  The one-pass formula
``E[x^2] - E[x]^2`` cancels two numbers of size ``c^2``: its variance is off by
about ``ulp(c^2)`` (it comes out negative or zero), and its output fails the
same tolerance by orders of magnitude; each test shows both sides.

References are float64 computations on the *same* float32 inputs, so the
tests measure the arithmetic, not the rounding of the input.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import normlib.functional as nf
import normlib.nn as nl
from normlib.core import moments
from normlib.sets import batch_set, group_set, instance_set, layer_set

EPS = 1e-5
OFFSETS = [1e4, 1e5, 1e6]
SIGMA = 1.0
SHAPE = (4, 6, 8, 8)

SETS = {
    "batch": batch_set(),
    "layer": layer_set(3),
    "instance": instance_set(),
    "group": group_set(2),
}
OPS = {
    "batch": lambda x: nf.batch_norm(x, None, None, training=True, eps=EPS),
    "layer": lambda x: nf.layer_norm(x, x.shape[1:], eps=EPS),
    "instance": lambda x: nf.instance_norm(x, eps=EPS),
    "group": lambda x: nf.group_norm(x, 2, eps=EPS),
}


def ulp32(v: float) -> float:
    return float(np.spacing(np.float32(v)))


def output_tol(offset: float) -> float:
    """A few ulps of the offset, relative to sigma: the rounding of a float32 mean."""
    return 4 * ulp32(offset) / SIGMA


def var_tol(offset: float) -> float:
    """Relative variance error: the mean's rounding squared, plus float32 round-off."""
    return 16 * (ulp32(offset) / SIGMA) ** 2 + 1e-5


def _data(offset: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 input N(offset, SIGMA^2), and the same values in float64."""
    x32 = (np.random.default_rng(seed).standard_normal(SHAPE) * SIGMA + offset).astype(np.float32)
    return x32, x32.astype(np.float64)


def _reference(x64: np.ndarray, S) -> tuple[np.ndarray, np.ndarray]:
    """Float64 two-pass output and variance over S (in S's viewed shape)."""
    xv = x64.reshape(S.view_shape(x64.shape))
    axes = S.reduce_axes(x64.shape)
    mean = xv.mean(axis=axes, keepdims=True)
    var = ((xv - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((xv - mean) / np.sqrt(var + EPS)).reshape(x64.shape), var


def _naive_float32(x32: np.ndarray, S) -> tuple[np.ndarray, np.ndarray]:
    """One pass in float32: var = E[x^2] - E[x]^2 (clipped at 0, as implementations must)."""
    xv = x32.reshape(S.view_shape(x32.shape))
    axes = S.reduce_axes(x32.shape)
    mean = xv.mean(axis=axes, keepdims=True, dtype=np.float32)
    var = (xv * xv).mean(axis=axes, keepdims=True, dtype=np.float32) - mean * mean
    y = (xv - mean) / np.sqrt(np.maximum(var, 0) + np.float32(EPS))
    return y.reshape(x32.shape), var


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"offset{o:.0e}")
def test_float32_output_with_large_offset_matches_float64(offset, name, backend):
    x32, x64 = _data(offset)
    ref, _ = _reference(x64, SETS[name])
    y = OPS[name](x32 if backend == "numpy" else torch.from_numpy(x32))
    y = np.asarray(y)
    assert y.dtype == np.float32
    err = np.abs(y - ref).max()
    assert err <= output_tol(offset), f"{name}: error {err:.3g} > {output_tol(offset):.3g} = 4 ulp({offset:g})"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"offset{o:.0e}")
def test_float32_variance_with_large_offset_matches_float64(offset, name, backend):
    x32, x64 = _data(offset, seed=1)
    S = SETS[name]
    _, var64 = _reference(x64, S)
    var = np.asarray(moments(x32 if backend == "numpy" else torch.from_numpy(x32), S).var, dtype=np.float64)
    rel = np.abs(var / var64 - 1).max()
    assert rel <= var_tol(offset), f"{name}: relative variance error {rel:.3g} > {var_tol(offset):.3g}"


@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"offset{o:.0e}")
def test_naive_one_pass_variance_fails_the_same_tolerance(offset, name):
    """The control: E[x^2] - E[x]^2 in float32 misses both tolerances by orders of magnitude."""
    x32, x64 = _data(offset)
    S = SETS[name]
    ref, var64 = _reference(x64, S)
    y_naive, var_naive = _naive_float32(x32, S)
    out_err = np.abs(y_naive - ref).max()
    var_err = np.abs(var_naive / var64 - 1).max()
    assert out_err > 100 * output_tol(offset), f"naive output error only {out_err:.3g}"
    assert var_err > 100 * var_tol(offset), f"naive variance error only {var_err:.3g}"
    # and normlib, on the very same input, passes them (the difference is the algorithm)
    y = OPS[name](x32)
    assert np.abs(y - ref).max() <= output_tol(offset)


def test_naive_variance_is_even_negative():
    """At offset 1e4 the one-pass float32 variance of unit-variance data comes out <= 0 somewhere."""
    x32, _ = _data(1e4)
    _, var_naive = _naive_float32(x32, instance_set())
    assert (var_naive <= 0).any()
    assert (np.asarray(moments(x32, instance_set()).var) > 0.5).all()


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"offset{o:.0e}")
def test_float32_input_gradient_with_large_offset(offset):
    """The backward reuses x_hat and 1/sigma: its float32 error is bounded like the output's."""
    x32, x64 = _data(offset, seed=2)
    g = np.random.default_rng(3).standard_normal(SHAPE)
    grads = {}
    for dt, x in ((torch.float32, x32), (torch.float64, x64)):
        xt = torch.tensor(x, dtype=dt, requires_grad=True)
        w = torch.linspace(0.5, 1.5, SHAPE[1], dtype=dt)
        nf.group_norm(xt, 3, w, None, eps=EPS).backward(torch.tensor(g, dtype=dt))
        grads[dt] = xt.grad.double().numpy()
    err = np.abs(grads[torch.float32] - grads[torch.float64]).max()
    scale = np.abs(g).max() * 1.5 / SIGMA
    assert err <= output_tol(offset) * scale * 4, f"gradient error {err:.3g}"


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"offset{o:.0e}")
def test_batchnorm_module_running_statistics_with_large_offset(offset):
    """Running mean and (unbiased) running variance in float32 stay close to float64 after several steps."""
    mods = {dt: nl.BatchNorm2d(SHAPE[1], momentum=None, dtype=dt) for dt in (torch.float32, torch.float64)}
    for step in range(3):
        x32, x64 = _data(offset, seed=10 + step)
        mods[torch.float32](torch.from_numpy(x32))
        mods[torch.float64](torch.from_numpy(x64))
    m32, m64 = mods[torch.float32], mods[torch.float64]
    assert np.abs(m32.running_mean.double().numpy() - m64.running_mean.numpy()).max() <= 4 * ulp32(offset)
    rel = np.abs(m32.running_var.double().numpy() / m64.running_var.numpy() - 1).max()
    assert rel <= var_tol(offset), f"running_var relative error {rel:.3g}"


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", list(OPS))
def test_half_precision_computes_in_float32_and_returns_input_dtype(name, dtype, tol):
    """Half inputs keep their dtype; the result is the float64 result rounded to half precision."""
    x = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) * 2 + 3).to(dtype)
    y = OPS[name](x)
    assert y.dtype == dtype
    ref = OPS[name](x.double())
    err = (y.double() - ref).abs().max().item()
    assert err <= tol * max(1.0, ref.abs().max().item()), f"{name} {dtype}: error {err:.3g}"
