"""Root Mean Square Layer Normalization: Layer Norm's set S without the mean.

RMSNorm (Zhang and Sennrich, 2019) takes the same set S as Layer Norm (the
trailing ``normalized_shape`` axes of one sample, :func:`normlib.sets.layer_set`)
but divides by the root mean square over S instead of subtracting the mean and
dividing by the standard deviation:

.. math::
    y = \\frac{x}{\\sqrt{\\operatorname{mean}_S(x^2) + \\epsilon}} \\odot \\gamma .

One statistic (the mean square, one reduction) instead of two (mean, then the
mean squared deviation).  The output is unchanged when ``x`` is multiplied by a
positive scalar (re-scaling invariance, up to ``eps``) but *not* when a constant
is added to ``x`` (re-centring invariance is lost).  On an input whose mean over
S is zero, RMSNorm and Layer Norm (without bias) agree.

:func:`rms_norm` has the signature of ``torch.nn.functional.rms_norm`` and
:class:`RMSNorm` the arguments, state and repr of ``torch.nn.RMSNorm``.  Both
accept a NumPy array too (NumPy out), for worked numbers.  The arithmetic is
:func:`normlib.core.normalize` with ``center=False``: the same core as every
other normalizer, told to skip the mean.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import _checks as chk
from .core import normalize
from .sets import layer_set

__all__ = ["rms_norm", "RMSNorm", "default_eps"]

Array = Any


def default_eps(dtype) -> float:
    """The ``eps`` PyTorch uses when ``eps=None``: machine epsilon of the *computation* type.

    float16 and bfloat16 are computed in float32, so they get
    ``finfo(float32).eps`` (≈1.19e-07), not their own much larger epsilon;
    float64 gets ``finfo(float64).eps`` (≈2.22e-16).
    """
    if dtype in (torch.float64, np.float64, np.dtype("float64")):
        return float(np.finfo(np.float64).eps)
    return float(np.finfo(np.float32).eps)


def rms_norm(
    input: Array,
    normalized_shape: int | Sequence[int],
    weight: Array | None = None,
    eps: float | None = None,
) -> Array:
    r"""RMS normalization over the trailing ``normalized_shape`` axes (``torch.nn.functional.rms_norm``).

    .. math::
        y = \frac{x}{\sqrt{\frac{1}{|S|}\sum_{i\in S} x_i^2 + \epsilon}} \odot \gamma,
        \qquad S = \text{the last } D = \text{len(normalized\_shape)} \text{ axes of one sample}

    Args:
        input: array of shape ``(*, *normalized_shape)``, floating point.
        normalized_shape: the trailing shape S runs over (an int means one axis).
        weight: optional per-element scale ``γ`` of shape ``normalized_shape``.
        eps: added to the mean square; ``None`` means :func:`default_eps` of the
            input's dtype (PyTorch's rule).

    Returns an array of the shape and dtype of ``input``.  The arithmetic is
    the book's one core, :func:`normlib.core.normalize` with Layer Norm's set
    S and ``center=False`` (no mean subtracted; ``mean_S(x²)`` in place of the
    variance), so the backward is the core's analytic gradient.

    Raises: ``TypeError`` for non-float input; ``ValueError`` when the trailing
    dimensions differ from ``normalized_shape`` (PyTorch's wording), for a
    ``weight`` not of shape ``normalized_shape``, for an empty
    ``normalized_shape``, or ``eps`` ≤ 0.

    >>> import numpy as np
    >>> np.round(rms_norm(np.array([[3.0, 4.0]]), [2], eps=1e-12), 4).tolist()  # RMS = sqrt(12.5)
    [[0.8485, 1.1314]]
    """
    op = "rms_norm"
    chk.check_array(input, op)
    shape = chk.check_normalized_shape(input, normalized_shape, op)
    chk.check_param(weight, shape, "weight", op, input)
    if eps is None:
        eps = default_eps(input.dtype)
    chk.check_eps(eps, op)

    y, _ = normalize(input, layer_set(len(shape)), eps, weight, center=False)
    return y


class RMSNorm(nn.Module):
    r"""RMSNorm over the trailing ``normalized_shape`` (``torch.nn.RMSNorm``'s arguments and state).

    .. math::  y = x / \sqrt{\operatorname{mean}_S(x^2) + \epsilon} \odot \gamma

    Args:
        normalized_shape: int or sequence; the trailing shape S runs over.
        eps: ``None`` (default) means machine epsilon of the computation dtype.
        elementwise_affine: if true, a parameter ``weight`` of shape
            ``normalized_shape`` initialised to ones (no bias: RMSNorm has none).
        device, dtype: for the parameter.

    ``state_dict`` keys: ``['weight']`` (or none without affine), so a
    ``torch.nn.RMSNorm``'s state loads with ``strict=True`` and the reverse.

    Raises ``ValueError`` for an empty or non-positive ``normalized_shape`` or
    ``eps`` ≤ 0 at construction; the input checks of :func:`rms_norm` at call time.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if eps is not None:
            chk.check_eps(eps, "RMSNorm")
        shape = tuple(chk.as_shape(normalized_shape, "RMSNorm"))
        if not shape:
            raise ValueError(f"RMSNorm: normalized_shape must have at least one dimension, got {normalized_shape!r}")
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            nn.init.ones_(self.weight)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}".format(**self.__dict__)
