"""Weight Standardization: normalize the convolution's weights, not its activations.

Qiao et al. (2019) standardize each output channel's filter before the
convolution,

.. math::
    \\hat W_{o,\\cdot} = \\frac{W_{o,\\cdot} - \\mu_o}{\\sqrt{\\sigma_o^2 + \\epsilon}},\\qquad
    \\mu_o, \\sigma^2_o = \\text{mean, biased variance of } W_{o,i,k_h,k_w}
    \\text{ over } (i, k_h, k_w),

so every filter has mean 0 and variance 1 over its ``C_in/groups · kh · kw``
entries.  It is the book's statistics core applied to the weight tensor
``(C_out, C_in/groups, kh, kw)`` with S = every axis but the first: Layer Norm's
set (:func:`normlib.sets.layer_set`) over the trailing three axes, so the same
:func:`normlib.core.normalize` (and its analytic backward) does the work.
It depends on no batch statistic at all, so it pairs with Group Norm for
small batches (Big Transfer, Kolesnikov et al. 2020, uses WS + GN throughout).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from . import _checks as chk
from .core import normalize
from .sets import layer_set

__all__ = ["standardize_weight", "WSConv2d"]

Array = Any


def standardize_weight(weight: Array, eps: float = 1e-5) -> Array:
    """Standardize a convolution (or linear) weight per output channel.

    Shapes: ``weight`` is ``(C_out, *rest)`` with at least one axis in
    ``rest``, e.g. ``(C_out, C_in/groups, kh, kw)``; the result has the same
    shape and dtype, each ``weight[o]`` with mean 0 and variance
    ``σ²/(σ² + eps)`` ≈ 1 over ``rest``.  NumPy in gives NumPy out; a tensor
    that requires grad gets the analytic gradient of normalization over S.

    Raises ``TypeError`` for a non-float weight; ``ValueError`` for a 1-D
    weight, a filter of one element (no spread to divide by), or eps ≤ 0.

    >>> import numpy as np
    >>> w = np.array([[[1.0, 3.0]], [[10.0, 10.0]]])  # two filters (C_out=2) of 2 entries
    >>> np.round(standardize_weight(w), 3).tolist()
    [[[-1.0, 1.0]], [[0.0, 0.0]]]
    """
    op = "standardize_weight"
    chk.check_array(weight, op)
    chk.check_eps(eps, op)
    if weight.ndim < 2:
        raise ValueError(
            f"{op}: expected a weight of shape [C_out, ...] with at least 2 dimensions, "
            f"got {weight.ndim}D weight of shape {chk.shape_of(weight)}"
        )
    S = layer_set(weight.ndim - 1)
    if S.set_size(tuple(weight.shape)) < 2:
        raise ValueError(
            f"{op}: expected more than 1 value per output channel, got weight of shape {chk.shape_of(weight)}"
        )
    w_hat, _ = normalize(weight, S, eps)
    return w_hat


class WSConv2d(chk.NoTorchScript, nn.Conv2d):
    r"""``torch.nn.Conv2d`` whose weight is standardized per output channel at every call.

    .. math::
        \hat W_o = \frac{W_o - \mathrm{E}_S[W_o]}{\sqrt{\mathrm{Var}_S[W_o] + \epsilon}}, \qquad
        y = \hat W \star x + b

    S is one output channel's filter, every axis but the first:
    :math:`(C_{in}/\text{groups}, k_h, k_w)`, with the *biased* variance.  The
    statistics are those of the weight, not of a batch: no estimator to choose
    between training and eval, no running statistics, no momentum.  The stored
    parameter is the raw weight :math:`W`; the convolution uses
    :func:`standardize_weight` :math:`(W)`.  Because the standardized filter has
    a fixed scale, WS is followed by a normalization with an affine map (Group
    Norm in Big Transfer), which restores the scale.

    Args:
        \*args, \*\*kwargs: ``nn.Conv2d``'s (``in_channels``, ``out_channels``,
            ``kernel_size``, ``stride``, ``padding``, ``bias``, ...); the
            ``state_dict`` is ``nn.Conv2d``'s.
        ws_eps: added to each filter's variance (keyword only). Default: ``1e-5``.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})`, as ``nn.Conv2d``

    Examples::

        >>> import torch
        >>> m = WSConv2d(3, 4, kernel_size=3, bias=False)
        >>> w = standardize_weight(m.weight)
        >>> bool(w.mean(dim=(1, 2, 3)).abs().max() < 1e-6)      # each filter: mean 0
        True
        >>> m(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 4, 6, 6])
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        chk.check_eps(ws_eps, "WSConv2d")
        self.ws_eps = ws_eps

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, standardize_weight(self.weight, self.ws_eps), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_eps={self.ws_eps}"
