"""The one statistics core under every normalization layer in normlib.

``normalize(x, S, eps)`` views ``x`` as :class:`~normlib.sets.StatSet` ``S`` says,
takes the biased mean and variance over S in two passes (mean first, then the
mean squared deviation: accurate in float32 even with a large offset, unlike
``E[x²] − E[x]²``), and returns

.. math::  \\hat x = (x - \\mu_S)\\, / \\sqrt{\\sigma^2_S + \\epsilon}.

The arithmetic is written once against the Python array API standard
(``array_api_compat``), so a NumPy array in gives NumPy out (for worked numbers
a reader can check by hand) and a torch tensor in gives a tensor out.  For
tensors that need gradients the same forward runs inside an autograd
``Function`` whose backward is the analytic gradient of normalization over S,

.. math::  \\frac{\\partial L}{\\partial x} = \\frac{1}{\\sigma}\\Big(g - \\operatorname{mean}_S(g)
           - \\hat x\\, \\operatorname{mean}_S(g\\, \\hat x)\\Big),\\qquad g = \\frac{\\partial L}{\\partial \\hat x},

also written once, in array-API terms.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat
import torch

from .sets import StatSet

__all__ = ["Moments", "moments", "normalize", "normalize_backward"]

Array = Any  # a NumPy array or a torch tensor


class Moments(NamedTuple):
    """Biased statistics over S, kept in the viewed shape (reduced axes of size 1)."""

    mean: Array
    var: Array
    count: int  # |S|, the number of entries each statistic is taken over


def _compute_dtype(xp, x):
    # Half precision accumulates badly: compute in float32 and cast back, as
    # PyTorch's CPU kernels and flax do.
    if x.dtype in (getattr(xp, "float16", None), getattr(torch, "bfloat16", None)):
        return xp.float32
    return x.dtype


def _centered(x: Array, S: StatSet):
    """View ``x`` as S says; return ``(axes, deviation, mean, var)`` from two passes."""
    xp = array_api_compat.array_namespace(x)
    axes = S.reduce_axes(tuple(x.shape))
    xv = xp.reshape(x, S.view_shape(tuple(x.shape)))
    cdt = _compute_dtype(xp, xv)
    if xv.dtype != cdt:
        xv = xp.astype(xv, cdt)
    mean = xp.mean(xv, axis=axes, keepdims=True)  # pass 1
    dev = xv - mean
    var = xp.mean(dev * dev, axis=axes, keepdims=True)  # pass 2: never E[x^2] - E[x]^2
    return axes, dev, mean, var


def moments(x: Array, S: StatSet) -> Moments:
    """Two-pass biased mean and variance of ``x`` over the set ``S``.

    Shapes: ``x`` is ``(N, C, *spatial)`` (or any shape for Layer Norm);
    ``mean`` and ``var`` have ``S.view_shape(x.shape)`` with the axes of S of
    size 1.
    """
    _, _, mean, var = _centered(x, S)
    return Moments(mean, var, S.set_size(tuple(x.shape)))


def _standardize(x: Array, S: StatSet, eps: float) -> tuple[Array, Array, Array, Array]:
    """Forward arithmetic: returns ``(x_hat, mean, var, rstd)``, all in the viewed shape."""
    xp = array_api_compat.array_namespace(x)
    _, dev, mean, var = _centered(x, S)
    rstd = 1.0 / xp.sqrt(var + eps)
    return dev * rstd, mean, var, rstd


def normalize_backward(grad_xhat: Array, x_hat: Array, rstd: Array, axes: tuple[int, ...]) -> Array:
    """Analytic gradient of ``x_hat = (x - mean_S) * rstd`` with respect to ``x``.

    All arrays in the viewed shape; ``axes`` are the axes of S.  Returns
    ``rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))``.
    """
    xp = array_api_compat.array_namespace(grad_xhat)
    g_mean = xp.mean(grad_xhat, axis=axes, keepdims=True)
    gx_mean = xp.mean(grad_xhat * x_hat, axis=axes, keepdims=True)
    return (grad_xhat - g_mean - x_hat * gx_mean) * rstd


class _NormalizeFunction(torch.autograd.Function):
    """Autograd wrapper: forward is :func:`_standardize`, backward :func:`normalize_backward`."""

    @staticmethod
    def forward(ctx, x, S, eps):  # type: ignore[override]
        x_hat, mean, var, rstd = _standardize(x, S, eps)
        ctx.axes = S.reduce_axes(tuple(x.shape))
        ctx.in_shape = tuple(x.shape)
        ctx.in_dtype = x.dtype
        ctx.save_for_backward(x_hat, rstd)
        ctx.mark_non_differentiable(mean, var)
        return x_hat.reshape(x.shape).to(x.dtype), mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_mean, _grad_var):  # type: ignore[override]
        x_hat, rstd = ctx.saved_tensors
        g = grad_out.reshape(x_hat.shape).to(x_hat.dtype)
        grad_x = normalize_backward(g, x_hat, rstd, ctx.axes)
        return grad_x.reshape(ctx.in_shape).to(ctx.in_dtype), None, None


def normalize(x: Array, S: StatSet, eps: float) -> tuple[Array, Moments]:
    """Normalize ``x`` over the set ``S``: ``(x - mean_S) / sqrt(var_S + eps)``.

    Returns ``(x_hat, Moments(mean, var, count))``: ``x_hat`` has the shape and
    dtype of ``x``; ``mean`` and ``var`` are the biased statistics in the viewed
    shape, without gradient.  NumPy in gives NumPy out; a tensor that requires
    grad goes through the analytic backward.

    >>> import numpy as np
    >>> from normlib.sets import instance_set
    >>> y, m = normalize(np.array([[[2.0, 3.0]]]), instance_set(), 1e-5)
    >>> np.round(y, 3).tolist(), float(m.mean.item()), float(m.var.item())
    ([[[-1.0, 1.0]]], 2.5, 0.25)
    """
    count = S.set_size(tuple(x.shape))
    if isinstance(x, torch.Tensor) and torch.is_grad_enabled() and x.requires_grad:
        x_hat, mean, var = _NormalizeFunction.apply(x, S, eps)
        return x_hat, Moments(mean, var, count)
    x_hat, mean, var, _ = _standardize(x, S, eps)
    xp = array_api_compat.array_namespace(x)
    x_hat = xp.reshape(x_hat, tuple(x.shape))
    if x_hat.dtype != x.dtype:
        x_hat = xp.astype(x_hat, x.dtype)
    return x_hat, Moments(mean, var, count)
