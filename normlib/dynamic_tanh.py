"""Dynamic Tanh: a normalization layer without statistics (Zhu et al., 2025).

"Transformers without Normalization" replaces each Layer Norm of a
transformer by an elementwise squashing with a learned input scale:

.. math::  y = \\gamma \\odot \\tanh(\\alpha\\, x) + \\beta

``α`` is one learned scalar (initialised to ``alpha_init``, 0.5 by default),
``γ`` and ``β`` are per feature, as Layer Norm's affine parameters.  No mean
or variance is taken, so no set S: each entry is mapped on its own.  What it
keeps from Layer Norm is the shape of the map Layer Norm's outputs trace in a
trained network (linear near zero, outliers squashed); what it drops is the
centring and the exact rescaling by each sample's spread: ``DyT(2x) ≠ DyT(x)``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import _checks as chk
from .nn import NormModule

__all__ = ["dynamic_tanh", "DyT"]

Array = Any


def _check_alpha(alpha: Array, op: str, x: Array) -> None:
    """``alpha`` is one number: a real scalar or a one-element tensor/array."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, (bool, np.bool_)):
        return
    if isinstance(alpha, torch.Tensor) and alpha.numel() == 1 and alpha.dtype.is_floating_point:
        return
    if isinstance(alpha, np.ndarray) and alpha.size == 1 and np.issubdtype(alpha.dtype, np.floating):
        return
    what = f"of shape {list(alpha.shape)}" if hasattr(alpha, "shape") else f"of type {type(alpha).__name__}"
    raise ValueError(f"{op}: alpha must be one floating-point number, got alpha {what} "
                     f"for input of shape {chk.shape_of(x)}")


def dynamic_tanh(
    input: Array,
    normalized_shape: int | Sequence[int],
    alpha: Array,
    weight: Array | None = None,
    bias: Array | None = None,
) -> Array:
    r"""Dynamic Tanh over the trailing ``normalized_shape``: ``γ ⊙ tanh(α x) + β``.

    Args:
        input: array of shape ``(*, *normalized_shape)``, floating point (NumPy in, NumPy out).
        normalized_shape: the trailing shape ``γ`` and ``β`` have (an int means one axis).
        alpha: the input scale, one number (a float or a one-element tensor).
        weight: optional ``γ`` of shape ``normalized_shape``.
        bias: optional ``β`` of shape ``normalized_shape``.

    Returns an array of the shape and dtype of ``input``.  Gradients flow
    through ordinary torch operations (no statistics, nothing to derive).

    Raises: ``TypeError`` for non-float input; ``ValueError`` when the trailing
    dimensions differ from ``normalized_shape`` (Layer Norm's wording), for an
    ``alpha`` with more than one element, or parameters of the wrong shape.

    Example::

        >>> import numpy as np
        >>> dynamic_tanh(np.array([[0.0, 2.0, 100.0]]), 3, 0.5).round(4).tolist()
        [[0.0, 0.7616, 1.0]]
    """
    op = "dynamic_tanh"
    chk.check_array(input, op)
    shape = chk.check_normalized_shape(input, normalized_shape, op)
    _check_alpha(alpha, op, input)
    chk.check_param(weight, shape, "weight", op, input)
    chk.check_param(bias, shape, "bias", op, input)
    tanh = torch.tanh if isinstance(input, torch.Tensor) else np.tanh
    y = tanh(alpha * input)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class DyT(NormModule):
    r"""Dynamic Tanh, a drop-in replacement for ``LayerNorm(normalized_shape)``.

    .. math::  y = \gamma \odot \tanh(\alpha x) + \beta

    Args:
        normalized_shape: int or sequence; the trailing shape of the input.
        alpha_init: initial value of the learned scalar ``alpha`` (paper: 0.5).
        elementwise_affine: if true, ``weight`` (ones) and ``bias`` (zeros) of
            shape ``normalized_shape``.
        bias: with ``elementwise_affine``, whether to keep ``bias``.

    Parameters: ``alpha`` of shape ``(1,)`` (as in the authors' code), and
    ``weight``, ``bias``.  Shapes: input ``(*, *normalized_shape)``, output the same.

    Example::

        >>> m = DyT(4)
        >>> x = torch.randn(2, 3, 4)
        >>> torch.equal(m(x), torch.tanh(0.5 * x))   # γ = 1, β = 0 at initialisation
        True
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        alpha_init: float = 0.5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        op = "DyT"
        self.normalized_shape = tuple(chk.as_shape(normalized_shape, op))
        if not self.normalized_shape:
            raise ValueError(f"{op}: normalized_shape must have at least one dimension, got {normalized_shape!r}")
        if (not isinstance(alpha_init, numbers.Real) or isinstance(alpha_init, (bool, np.bool_))
                or not math.isfinite(alpha_init)):
            raise ValueError(f"{op}: alpha_init must be a finite number, got alpha_init={alpha_init!r}")
        kw = {"device": device, "dtype": dtype}
        self.alpha_init = float(alpha_init)
        self.elementwise_affine = elementwise_affine
        self.alpha = nn.Parameter(torch.full((1,), self.alpha_init, **kw))
        self._register_affine(self.normalized_shape, elementwise_affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        """α ← ``alpha_init``, γ ← 1, β ← 0."""
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init)
        self._reset_affine()

    def forward(self, input: Tensor) -> Tensor:
        return dynamic_tanh(input, self.normalized_shape, self.alpha, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, alpha_init={self.alpha_init}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
