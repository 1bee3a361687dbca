"""Input checks shared by every op; each raises before any arithmetic.

Messages follow PyTorch's wording where PyTorch has one ("Expected ... but got
input of shape ...") and always name the op, so an error from ``group_norm``
never talks about training.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable
from typing import Any, Sequence

import numpy as np
import torch

Array = Any


def shape_of(x: Array) -> list[int]:
    return [int(s) for s in x.shape]


def check_array(x: Array, op: str, name: str = "input", *, torch_only: bool = False) -> None:
    """``x`` must be a NumPy array or torch tensor (only a tensor if ``torch_only``) of a floating dtype.

    >>> check_array(torch.ones(2, dtype=torch.int64), "cosine_linear", "weight")
    Traceback (most recent call last):
    ...
    TypeError: cosine_linear: expected a floating-point weight, got dtype torch.int64 for weight of shape [2]
    """
    if torch_only and not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if isinstance(x, torch.Tensor):
        floating = x.dtype.is_floating_point
    elif isinstance(x, np.ndarray):
        floating = np.issubdtype(x.dtype, np.floating)
    else:
        raise TypeError(f"{op}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}")
    if not floating:
        raise TypeError(
            f"{op}: expected a floating-point {name}, got dtype {x.dtype} for {name} of shape {shape_of(x)}"
        )


def check_min_ndim(x: Array, op: str, min_ndim: int) -> None:
    if x.ndim < min_ndim:
        raise ValueError(
            f"{op}: expected input with at least {min_ndim} dimensions (N, C, ...), "
            f"got {x.ndim}D input of shape {shape_of(x)}"
        )


def check_ndim(x: Array, op: str, allowed: Sequence[int]) -> None:
    """PyTorch's wording: 'expected 2D or 3D input (got 4D input)'."""
    if x.ndim not in allowed:
        want = " or ".join(f"{d}D" for d in allowed)
        raise ValueError(f"{op}: expected {want} input (got {x.ndim}D input of shape {shape_of(x)})")


def check_eps(eps: float, op: str) -> None:
    """``eps`` must be a real number (Python or NumPy scalar), finite and > 0."""
    if not isinstance(eps, numbers.Real) or isinstance(eps, (bool, np.bool_)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"{op}: eps must be a finite number > 0, got eps={eps!r}")


class IntegerTypeError(TypeError, ValueError):
    """A count of the wrong type: a ``TypeError`` (as PyTorch raises) that is also a ``ValueError``.

    The count checks raised ``ValueError`` for every bad count before they were
    shared; code that catches ``ValueError`` keeps working.
    """


def check_positive_int(value: Any, name: str, op: str, *, minimum: int = 1) -> int:
    """A count (``num_features``, ``num_groups``, a size, ...) must be an integer >= 1; returns it as an ``int``.

    Python ints and NumPy integers (any ``numbers.Integral``) are accepted;
    ``bool``, floats (even ``3.0``), strings and ``None`` raise
    :class:`IntegerTypeError` (a ``TypeError``), values < 1 raise ``ValueError``.
    The message names the op, the argument, the value and its type:

    >>> check_positive_int(np.int64(4), "num_channels", "GroupNorm")
    4
    >>> check_positive_int(0, "num_groups", "GroupNorm")
    Traceback (most recent call last):
    ...
    ValueError: GroupNorm: num_groups must be a positive integer, got 0 (int)

    ``minimum=0`` also accepts zero (an empty layer, as torch's ``GroupNorm(1, 0)``).
    """
    kind = "positive" if minimum >= 1 else "non-negative"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise IntegerTypeError(
            f"{op}: {name} must be a {kind} integer, got {value!r} ({type(value).__name__})"
        )
    n = operator.index(value)
    if n < minimum:
        raise ValueError(f"{op}: {name} must be a {kind} integer, got {n} ({type(value).__name__})")
    return n


def check_momentum(momentum: float | None, op: str, allow_none: bool = True) -> None:
    """``momentum`` must be a real number in [0, 1] (NaN is not); ``None`` only if ``allow_none``.

    Modules accept ``None`` (cumulative average); the functional ops need the
    number itself, as ``torch.nn.functional`` does.
    """
    if momentum is None:
        if allow_none:
            return
        raise ValueError(
            f"{op}: momentum must be a number in [0, 1], got momentum=None (the cumulative "
            f"average is a module option; the functional op needs the factor, e.g. 1/num_batches_tracked)"
        )
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum <= 1.0:
        want = "[0, 1] or None" if allow_none else "[0, 1]"
        raise ValueError(f"{op}: momentum must be in {want}, got momentum={momentum!r}")


class DtypeError(TypeError, RuntimeError):
    """A parameter or buffer whose dtype does not fit the input's.

    A ``TypeError``, and the ``RuntimeError`` PyTorch raises for the same call
    ("mixed dtype (CPU): expect parameter to have scalar type of Float"), so
    code written for either keeps catching it.
    """


class RequiresGradError(ValueError, RuntimeError):
    """A running buffer that requires grad: a ``ValueError``, and the ``RuntimeError`` PyTorch raises."""


#: Input dtypes whose parameters may also be float32 (PyTorch's mixed precision rule on CPU).
_REDUCED = (torch.float16, torch.bfloat16)


def check_param(
    p: Array | None, expected: Sequence[int], name: str, op: str, x: Array, *, buffer: bool = False
) -> None:
    """A weight, bias or (``buffer=True``) running buffer that fits the input ``x``.

    In this order, each with its own message: ``p`` is an array of ``x``'s
    library (a list is a ``TypeError`` naming the argument, as in PyTorch), of
    exactly the ``expected`` shape, of a floating dtype; a torch ``p`` has
    ``x``'s dtype, or float32 for a float16/bfloat16 ``x`` (PyTorch's rule;
    :class:`DtypeError`); a running buffer does not require grad
    (:class:`RequiresGradError`, as PyTorch).  NumPy parameters follow NumPy's
    type promotion (the output keeps the input's dtype), so only their kind is
    checked.

    >>> check_param([1.0, 1.0], [2], "weight", "layer_norm", torch.ones(3, 2))
    Traceback (most recent call last):
    ...
    TypeError: layer_norm: argument 'weight' must be a Tensor like the input, not list
    """
    if p is None:
        return
    if not isinstance(p, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{op}: argument '{name}' must be a {type(x).__name__} like the input, not {type(p).__name__}")
    if shape_of(p) != list(expected):
        raise ValueError(
            f"{op}: expected {name} of shape {list(expected)}, got {name} of shape "
            f"{shape_of(p)} for input of shape {shape_of(x)}"
        )
    if isinstance(p, torch.Tensor) != isinstance(x, torch.Tensor):
        raise TypeError(
            f"{op}: {name} is a {type(p).__name__} but input is a {type(x).__name__}; pass both as "
            f"NumPy arrays or both as torch tensors"
        )
    if not (p.dtype.is_floating_point if isinstance(p, torch.Tensor) else np.issubdtype(p.dtype, np.floating)):
        raise DtypeError(f"{op}: expected {name} of a floating-point dtype, got {name} of dtype {p.dtype}")
    if isinstance(p, torch.Tensor):
        allowed = (x.dtype, torch.float32) if x.dtype in _REDUCED else (x.dtype,)
        if p.dtype not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise DtypeError(
                f"{op}: expected {name} of dtype {want} for input of dtype {x.dtype}, got {name} of "
                f"dtype {p.dtype}; convert one of them (e.g. module.to(input.dtype))"
            )
        if buffer and p.requires_grad:
            raise RequiresGradError(
                f"{op}: {name} must not require grad: running statistics are buffers updated in "
                f"place, not differentiable inputs"
            )


def check_stats_op(
    op: str, x: Array, min_ndim: int, eps: float, momentum: float,
    running_mean: Array | None, running_var: Array | None, weight: Array | None, bias: Array | None,
) -> int:
    """Every check of an op with running statistics (``batch_norm``, ``instance_norm``); returns C.

    The input is a floating array of at least ``min_ndim`` dimensions (N, C, ...);
    ``eps`` and ``momentum`` (a number: the functional ops need the factor itself)
    are valid; the buffers and affine parameters fit (:func:`check_param`).
    """
    check_array(x, op)
    check_min_ndim(x, op, min_ndim)
    check_eps(eps, op)
    check_momentum(momentum, op, allow_none=False)
    C = int(x.shape[1])
    check_param(running_mean, [C], "running_mean", op, x, buffer=True)
    check_param(running_var, [C], "running_var", op, x, buffer=True)
    check_param(weight, [C], "weight", op, x)
    check_param(bias, [C], "bias", op, x)
    return C


def check_groups_divide(num_channels: int, num_groups: int, op: str, input_shape: Sequence[int] | None = None) -> None:
    """``num_groups`` must divide the channel count.

    Two messages, as in PyTorch: a constructor (no ``input_shape``) names the two
    counts; an op on an input names the input's shape.
    """
    if num_channels % num_groups == 0:
        return
    if input_shape is None:
        raise ValueError(
            f"{op}: num_channels must be divisible by num_groups, got "
            f"num_channels={num_channels} and num_groups={num_groups}"
        )
    raise ValueError(
        f"{op}: Expected number of channels in input to be divisible by num_groups, "
        f"but got input of shape {list(input_shape)} and num_groups={num_groups}"
    )


def check_nonempty_shape(num_dims: int, op: str, given: Any) -> None:
    """``normalized_shape`` must name at least one axis (``given`` is shown as the caller passed it)."""
    if num_dims < 1:
        raise ValueError(f"{op}: normalized_shape must have at least one dimension, got {given!r}")


def check_channels(x: Array, num_channels: int, op: str, dim: int = 1) -> None:
    """A module built for ``num_channels`` channels gets an input with that many at ``dim``."""
    if x.shape[dim] != num_channels:
        raise ValueError(
            f"{op}: expected input with {num_channels} channels at dim {dim}, got input of shape {shape_of(x)}"
        )


def check_more_than_one(count: int, op: str, x: Array, what: str = "value per channel") -> None:
    """Training statistics need |S| ≠ 1: one value has no spread to normalize by (|S| = 0 gives an empty output)."""
    if count == 1:
        raise ValueError(f"{op}: Expected more than 1 {what} when training, got input size {shape_of(x)}")


def as_shape(normalized_shape: int | Sequence[int], op: str | None = None) -> list[int]:
    """``normalized_shape`` (an int or a sequence of ints) as a list of ints.

    With ``op`` (a module's constructor) a single value stands for one size, every
    size must pass :func:`check_positive_int`, named ``normalized_shape[i]``, and
    the shape must not be empty.
    """
    if op is None:
        if isinstance(normalized_shape, numbers.Integral):
            return [int(normalized_shape)]
        return [int(s) for s in normalized_shape]
    sizes = normalized_shape if isinstance(normalized_shape, Iterable) else [normalized_shape]
    shape = [check_positive_int(s, f"normalized_shape[{i}]", op) for i, s in enumerate(sizes)]
    check_nonempty_shape(len(shape), op, normalized_shape)
    return shape


def check_normalized_shape(x: Array, normalized_shape: int | Sequence[int], op: str) -> list[int]:
    """The input's trailing dimensions must equal ``normalized_shape`` (PyTorch's message); returns it as a list."""
    shape = as_shape(normalized_shape)
    check_nonempty_shape(len(shape), op, shape)
    k = len(shape)
    if x.ndim < k or shape_of(x)[-k:] != shape:
        raise ValueError(
            f"{op}: Given normalized_shape={shape}, expected input with shape [*, "
            f"{', '.join(map(str, shape))}], but got input of size {shape_of(x)}"
        )
    return shape


class NoTorchScript:
    """Mixin for normlib's modules: ``torch.jit.script`` fails at once, saying why.

    ``torch.jit.script`` calls ``__prepare_scriptable__`` on every submodule
    before compiling; here it raises ``NotImplementedError`` (a ``RuntimeError``,
    like TorchScript's own errors) instead of a compiler error deep inside an
    input check.
    """

    def __prepare_scriptable__(self):
        name = type(self).__name__
        raise NotImplementedError(
            f"{name}: torch.jit.script is not supported: normlib's modules run Python "
            f"(input checks, NumPy inputs, C kernels loaded through ctypes) that TorchScript "
            f"cannot compile, and TorchScript is in maintenance mode; use torch.export or "
            f"torch.compile, or the torch.nn layer if the model must be scripted"
        )

