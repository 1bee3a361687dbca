"""Functional normalization ops with the signatures of ``torch.nn.functional``.

Each op is a choice of the set S (:mod:`normlib.sets`) handed to the one core
:func:`normlib.core.normalize`, followed by the per-channel (or per-element)
affine map ``y = x_hat * weight + bias``.  None of them calls a PyTorch
normalization kernel.  Every op accepts a NumPy array (NumPy out) or a torch
tensor (tensor out, with autograd).
"""
from __future__ import annotations

from typing import Any, Sequence

import array_api_compat
import torch

from . import _checks as chk
from .core import normalize
from .sets import batch_set, group_set, instance_set, layer_set

__all__ = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm", "channel_view"]

Array = Any


def channel_view(p: Array, ndim: int) -> Array:
    """Reshape a per-channel vector ``(C,)`` to ``(1, C, 1, ..., 1)`` for an ``ndim``-D input."""
    return p.reshape((1, -1) + (1,) * (ndim - 2))  # NumPy arrays and tensors alike


def _affine(x: Array, weight: Array | None, bias: Array | None, view) -> Array:
    if weight is not None:
        x = x * view(weight)
    if bias is not None:
        x = x + view(bias)
    return x


def _update_running(pairs: list[tuple[Array, Array]], momentum: float) -> None:
    """``running ← (1 − momentum)·running + momentum·new`` in place, for each ``(running, new)`` (PyTorch's convention)."""
    if not pairs:
        return
    if not isinstance(pairs[0][0], torch.Tensor):
        for running, new in pairs:
            running *= 1.0 - momentum
            running += momentum * new
        return
    with torch.no_grad():
        if all(r.dtype == n.dtype and r.dtype in (torch.float32, torch.float64) for r, n in pairs):
            # the same arithmetic, bit for bit, in three calls for all the buffers
            running = [r for r, _ in pairs]
            torch._foreach_mul_(running, 1.0 - momentum)
            torch._foreach_add_(running, torch._foreach_mul([n for _, n in pairs], momentum))
        else:
            for running, new in pairs:
                running *= 1.0 - momentum
                running += momentum * new


def _apply_stats(x: Array, mean: Array, var: Array, eps: float, weight: Array | None, bias: Array | None) -> Array:
    """Eval path: ``(x − mean)/sqrt(var + eps)·weight + bias`` with given per-channel statistics, in ``x``'s dtype.

    Divides where :func:`normlib.reference.standardize` multiplies by the
    reciprocal (as PyTorch's eval kernel and the chapters' printed digits do);
    the two agree to rounding (``tests/normlib/test_reference.py``).
    """
    xp = array_api_compat.array_namespace(x)
    view = lambda p: channel_view(p, x.ndim)  # noqa: E731
    return _like(_affine((x - view(mean)) / xp.sqrt(view(var) + eps), weight, bias, view), x)


def _like(y: Array, x: Array) -> Array:
    """``y`` in ``x``'s dtype: the output keeps the input's dtype even if the statistics or
    parameters have another (as the training path, where the core computes in ``x``'s dtype)."""
    if y.dtype == x.dtype:
        return y
    return array_api_compat.array_namespace(y).astype(y, x.dtype)


def batch_norm(
    input: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Array:
    r"""Batch Normalization: S is one channel over the batch and every position.

    .. math::
        y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,\gamma_c + \beta_c,
        \qquad \mu_c, \sigma^2_c \text{ over } (N, *\text{spatial}) \text{ (biased)}

    In training the batch statistics normalize, and the running buffers (if
    given) are updated in place: ``running_mean ← (1 − momentum)·running_mean +
    momentum·μ`` and ``running_var`` likewise with the *unbiased* variance
    ``σ²·n/(n − 1)``, ``n = N·∏spatial``.  In eval the running statistics
    normalize.

    Shapes: ``input`` (N, C, \*); ``running_mean``, ``running_var``, ``weight``,
    ``bias``: (C,).

    Raises: ``TypeError`` for non-float input; ``ValueError`` for fewer than 2
    dimensions, parameters or buffers not of shape (C,), eps ≤ 0, momentum
    outside [0, 1] (or None: the cumulative average is a module option),
    missing running statistics in eval, or one value per channel in training.

    >>> import numpy as np
    >>> x = np.array([[1.0], [2.0], [6.0]])        # N = 3, C = 1: mean 3, biased var 14/3
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> np.round(batch_norm(x, rm, rv, training=True, momentum=1.0), 4).ravel().tolist()
    [-0.9258, -0.4629, 1.3887]
    >>> rm.tolist(), rv.tolist()                   # updated in place; the variance unbiased: 14/2
    ([3.0], [7.0])
    """
    op = "batch_norm"
    chk.check_array(input, op)
    chk.check_min_ndim(input, op, 2)
    chk.check_eps(eps, op)
    chk.check_momentum(momentum, op, allow_none=False)
    C = int(input.shape[1])
    for name, p in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        chk.check_param(p, [C], name, op, input)
    view = lambda p: channel_view(p, input.ndim)  # noqa: E731
    S = batch_set()
    if training:
        n = S.set_size(tuple(input.shape))
        if n == 0:
            # An empty batch (N = 0), as torch allows: nothing to normalize, running stats unchanged.
            return _like(_affine(input, weight, bias, view), input)
        chk.check_more_than_one(n, op, input)
        y, m = normalize(input, S, eps, *(None if p is None else view(p) for p in (weight, bias)))
        updates = []
        if running_mean is not None:
            updates.append((running_mean, m.mean.reshape(C)))
        if running_var is not None:
            updates.append((running_var, m.var.reshape(C) * (n / (n - 1))))
        _update_running(updates, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var must be given when training=False")
        y = _apply_stats(input, running_mean, running_var, eps, weight, bias)
    return y


def instance_norm(
    input: Array,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    weight: Array | None = None,
    bias: Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Array:
    r"""Instance Normalization: S is one channel of one sample, over its positions.

    .. math::  y = \frac{x - \mu_{n,c}}{\sqrt{\sigma^2_{n,c} + \epsilon}}\,\gamma_c + \beta_c

    With ``use_input_stats`` the per-instance statistics normalize and the
    running buffers (if given) move toward their average over the batch (the
    variance unbiased with ``n = ∏spatial``), as PyTorch does; otherwise the
    running statistics normalize.

    Shapes: ``input`` (N, C, \*spatial) with at least one spatial axis;
    buffers and affine parameters (C,).

    Raises: as :func:`batch_norm`, and ``ValueError`` for a single spatial
    element when using input statistics.
    """
    op = "instance_norm"
    chk.check_array(input, op)
    chk.check_min_ndim(input, op, 3)
    chk.check_eps(eps, op)
    chk.check_momentum(momentum, op, allow_none=False)
    C = int(input.shape[1])
    for name, p in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        chk.check_param(p, [C], name, op, input)
    view = lambda p: channel_view(p, input.ndim)  # noqa: E731
    if use_input_stats:
        S = instance_set()
        positions = S.set_size(tuple(input.shape))
        chk.check_more_than_one(positions, op, input, "spatial element")
        y, m = normalize(input, S, eps, *(None if p is None else view(p) for p in (weight, bias)))
        xp = array_api_compat.array_namespace(input)
        N = int(input.shape[0])
        if N == 0 or positions == 0:  # an empty input, as torch allows: running statistics unchanged
            return y
        updates = []
        if running_mean is not None:
            updates.append((running_mean, xp.mean(xp.reshape(m.mean, (N, C)), axis=0)))
        if running_var is not None:
            unbiased = xp.reshape(m.var, (N, C)) * (positions / (positions - 1))
            updates.append((running_var, xp.mean(unbiased, axis=0)))
        _update_running(updates, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var must be given when use_input_stats=False")
        y = _apply_stats(input, running_mean, running_var, eps, weight, bias)
    return y


def layer_norm(
    input: Array,
    normalized_shape: int | Sequence[int],
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    r"""Layer Normalization: S is the trailing ``normalized_shape`` axes of one sample.

    .. math::  y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta,
        \qquad \mu, \sigma^2 \text{ over the last } D = \text{len(normalized\_shape)} \text{ axes}

    Shapes: ``input`` (\*, \*normalized_shape); ``weight``, ``bias``:
    ``normalized_shape`` (elementwise, not per channel).

    Raises: ``ValueError`` when the input's trailing dimensions differ from
    ``normalized_shape`` (PyTorch's message), parameters of the wrong shape,
    eps ≤ 0; ``TypeError`` for non-float input.
    """
    op = "layer_norm"
    chk.check_array(input, op)
    chk.check_eps(eps, op)
    shape = chk.check_normalized_shape(input, normalized_shape, op)
    chk.check_param(weight, shape, "weight", op, input)
    chk.check_param(bias, shape, "bias", op, input)
    y, _ = normalize(input, layer_set(len(shape)), eps, weight, bias)  # affine fused into the core
    return y


def group_norm(
    input: Array,
    num_groups: int,
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    r"""Group Normalization: S is one group of ``C / G`` channels of one sample, over positions.

    .. math::  y = \frac{x - \mu_{n,g}}{\sqrt{\sigma^2_{n,g} + \epsilon}}\,\gamma_c + \beta_c

    ``G = 1`` gives Layer Norm over (C, \*spatial) (with per-channel affine);
    ``G = C`` gives Instance Norm.  The affine parameters are per channel.

    Shapes: ``input`` (N, C, \*); ``weight``, ``bias``: (C,).

    Raises: ``ValueError`` when ``num_groups`` does not divide C (PyTorch's
    message), for fewer than 2 dimensions, parameters not of shape (C,),
    eps ≤ 0; ``TypeError`` for non-float input.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 4, 5))
    >>> bool(np.allclose(group_norm(x, 1), layer_norm(x, (4, 5))))  # G = 1: Layer Norm over (C, L)
    True
    >>> bool(np.allclose(group_norm(x, 4), instance_norm(x)))      # G = C: Instance Norm
    True
    """
    op = "group_norm"
    chk.check_array(input, op)
    chk.check_min_ndim(input, op, 2)
    chk.check_eps(eps, op)
    num_groups = chk.check_positive_int(num_groups, "num_groups", op)
    C = int(input.shape[1])
    if C % num_groups:
        raise ValueError(
            f"{op}: Expected number of channels in input to be divisible by num_groups, "
            f"but got input of shape {chk.shape_of(input)} and num_groups={num_groups}"
        )
    chk.check_param(weight, [C], "weight", op, input)
    chk.check_param(bias, [C], "bias", op, input)
    view = lambda p: None if p is None else channel_view(p, input.ndim)  # noqa: E731
    y, _ = normalize(input, group_set(num_groups), eps, view(weight), view(bias))  # affine fused
    return y


# RMSNorm lives in normlib.rms with its module; re-exported here as in torch.nn.functional.
from .rms import rms_norm  # noqa: E402
