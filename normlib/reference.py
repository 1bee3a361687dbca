"""The reference core: normalization over a set S as the book writes it, one formula per function.

Three short functions, in plain array-API operations (a NumPy array in gives
NumPy out; torch tensors keep autograd, so second derivatives come for free):

* :func:`moments` takes the biased mean and variance over S in two passes;
* :func:`standardize` maps ``x`` to ``(x − μ)/sqrt(σ² + ε)·γ + β``;
* :func:`standardize_backward` is the analytic gradient of that map, statistics
  included, written as the formula of the backward chapter.

Every faster path in normlib (the whole-tensor autograd Function and the C
kernels of :mod:`normlib.core`, cross-process Batch Norm, eval-mode Batch Norm,
FrozenBatchNorm) either calls these functions or is tested against them
(``tests/normlib/test_reference.py``).

Shapes: ``x`` is viewed as ``S.view_shape(x.shape)`` (only Group Norm changes
it: ``(N, C, …)`` becomes ``(N, G, C/G, …)``); statistics keep that view with
the axes of S of size 1, so they broadcast against it, and so must ``weight``
and ``bias`` (e.g. ``(1, G, C/G, 1, 1)`` for Group Norm).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat
import array_api_compat.torch as _torch_xp
import torch

from .sets import StatSet

__all__ = ["Moments", "moments", "standardize", "normalized_backward", "standardize_backward"]

Array = Any  # a NumPy array or a torch tensor


class Moments(NamedTuple):
    """Biased statistics over S, kept in the viewed shape (the axes of S of size 1)."""

    mean: Array
    var: Array
    count: int  # |S|, the number of entries each statistic is taken over


def _namespace(x: Array):
    # torch tensors first: the common case, and one torch.compile can trace
    return _torch_xp if isinstance(x, torch.Tensor) else array_api_compat.array_namespace(x)


def moments(x: Array, S: StatSet, *, center: bool = True) -> Moments:
    """Mean and biased variance of ``x`` over S: the mean first, then the mean squared deviation.

    Two passes keep float32 accurate when the mean is large against the spread
    (``E[x²] − E[x]²`` would cancel).  ``center=False`` (RMSNorm) takes no mean:
    ``mean`` is zeros and ``var`` is ``mean_S(x²)``.
    """
    xp = _namespace(x)
    shape = tuple(x.shape)
    xs = xp.reshape(x, S.view_shape(shape))
    axes = S.reduce_axes(shape)
    if center:
        mean = xp.mean(xs, axis=axes, keepdims=True)
        dev = xs - mean
        var = xp.mean(dev * dev, axis=axes, keepdims=True)
    else:
        var = xp.mean(xs * xs, axis=axes, keepdims=True)
        mean = xp.zeros_like(var)
    return Moments(mean, var, math.prod([xs.shape[a] for a in axes]))


def standardize(x: Array, mean: Array, var: Array, eps: float,
                weight: Array | None = None, bias: Array | None = None) -> Array:
    """``y = (x − mean)·rstd · weight + bias`` with ``rstd = 1/sqrt(var + eps)`` (weight and bias optional).

    ``x`` in the viewed shape; ``mean``, ``var``, ``weight``, ``bias`` broadcast
    against it.  Multiplying by the reciprocal (one division per set, not per
    entry) is what normlib's kernels do too; it can differ from dividing in the
    last bit.
    """
    xp = _namespace(x)
    rstd = 1.0 / xp.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _sum_to(a: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``a`` over the axes along which an array of ``shape`` was broadcast to it."""
    xp = _namespace(a)
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1)
    return xp.reshape(xp.sum(a, axis=axes, keepdims=True) if axes else a, shape)


def normalized_backward(g: Array, x_hat: Array, rstd: Array, axes: tuple[int, ...], *,
                        center: bool = True) -> Array:
    """The gradient through ``x̂ = (x − mean_S)·rstd`` (statistics included), given ``g = ∂L/∂x̂``::

        dx = rstd · (g − mean_S(g) − x̂ · mean_S(g · x̂))      (no mean_S(g) term if not centred)
    """
    xp = _namespace(g)
    mean_g = xp.mean(g, axis=axes, keepdims=True) if center else 0.0
    return rstd * (g - mean_g - x_hat * xp.mean(g * x_hat, axis=axes, keepdims=True))


def standardize_backward(dy: Array, x: Array, axes: tuple[int, ...], eps: float, weight: Array | None = None,
                         bias_shape: tuple[int, ...] | None = None, *, center: bool = True):
    """Gradients ``(dx, dweight, dbias)`` of ``y = standardize(x, μ_S(x), σ²_S(x), eps, weight, bias)``.

    ``x`` and ``dy`` in the viewed shape, ``axes`` the axes of S.  With
    ``g = weight · dy``, ``dx`` is :func:`normalized_backward` of ``g``;
    ``dweight = Σ dy · x̂`` and ``dbias = Σ dy`` over the axes each parameter is
    broadcast along (``None`` without a weight, or unless ``bias_shape`` is given).
    """
    xp = _namespace(x)
    mean = xp.mean(x, axis=axes, keepdims=True) if center else 0.0
    dev = x - mean
    rstd = 1.0 / xp.sqrt(xp.mean(dev * dev, axis=axes, keepdims=True) + eps)
    x_hat = dev * rstd
    g = dy if weight is None else dy * weight
    dx = normalized_backward(g, x_hat, rstd, axes, center=center)
    dweight = None if weight is None else _sum_to(dy * x_hat, tuple(weight.shape))
    dbias = None if bias_shape is None else _sum_to(dy, tuple(bias_shape))
    return dx, dweight, dbias
