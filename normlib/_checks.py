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


def check_array(x: Array, op: str) -> None:
    """Input must be a NumPy array or torch tensor of a floating-point dtype."""
    if isinstance(x, torch.Tensor):
        if not x.dtype.is_floating_point:
            raise TypeError(
                f"{op}: expected a floating-point input, got dtype {x.dtype} "
                f"for input of shape {shape_of(x)}"
            )
    elif isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"{op}: expected a floating-point input, got dtype {x.dtype} "
                f"for input of shape {shape_of(x)}"
            )
    else:
        raise TypeError(f"{op}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


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


def check_param(p: Array | None, expected: Sequence[int], name: str, op: str, x: Array) -> None:
    """A weight, bias or running buffer must have exactly the ``expected`` shape."""
    if p is None:
        return
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


def check_more_than_one(count: int, op: str, x: Array, what: str = "value per channel") -> None:
    """Training statistics need |S| ≠ 1: one value has no spread to normalize by (|S| = 0 gives an empty output)."""
    if count == 1:
        raise ValueError(f"{op}: Expected more than 1 {what} when training, got input size {shape_of(x)}")


def as_shape(normalized_shape: int | Sequence[int], op: str | None = None) -> list[int]:
    """``normalized_shape`` (an int or a sequence of ints) as a list of ints.

    With ``op`` (a module's constructor) a single value stands for one size and
    every size must pass :func:`check_positive_int`, named ``normalized_shape[i]``;
    the shape may still be empty.
    """
    if op is None:
        if isinstance(normalized_shape, numbers.Integral):
            return [int(normalized_shape)]
        return [int(s) for s in normalized_shape]
    sizes = normalized_shape if isinstance(normalized_shape, Iterable) else [normalized_shape]
    return [check_positive_int(s, f"normalized_shape[{i}]", op) for i, s in enumerate(sizes)]


def check_normalized_shape(x: Array, normalized_shape: int | Sequence[int], op: str) -> list[int]:
    """The input's trailing dimensions must equal ``normalized_shape`` (PyTorch's message); returns it as a list."""
    shape = as_shape(normalized_shape)
    if not shape:
        raise ValueError(f"{op}: normalized_shape must have at least one dimension, got {shape}")
    k = len(shape)
    if x.ndim < k or shape_of(x)[-k:] != shape:
        raise ValueError(
            f"{op}: Given normalized_shape={shape}, expected input with shape [*, "
            f"{', '.join(map(str, shape))}], but got input of size {shape_of(x)}"
        )
    return shape
