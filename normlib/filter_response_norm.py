r"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan 2019).

FRN normalizes each channel of each image by the root mean square of its
responses, without subtracting a mean, then applies a learned affine map and a
learned threshold:

.. math::
    \nu^2_{n,c} = \frac{1}{HW}\sum_{h,w} x_{n,c,h,w}^2,\qquad
    \hat x = \frac{x}{\sqrt{\nu^2_{n,c} + \epsilon}},\qquad
    y = \max(\gamma_c \hat x + \beta_c,\ \tau_c).

Its set S is Instance Norm's, one channel of one image over (H, W)
(:func:`frn_set`); what differs is that no mean is subtracted, the choice
``center=False`` of :func:`normlib.core.normalize` that RMSNorm also makes.  No
statistic involves the batch, so FRN behaves the same at every batch size and
in training and eval.  Without a mean subtracted the output need not be
centred, and a ReLU after it could output zeros for a whole channel; the TLU's
learned :math:`\tau` (the activation is part of the layer, it replaces the
ReLU) lets the network move the threshold.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import _checks as chk
from .core import normalize
from .functional import channel_view
from .sets import StatSet

__all__ = ["frn_set", "filter_response_norm", "FilterResponseNorm2d"]

Array = Any


def frn_set() -> StatSet:
    """FRN's set S: per image and channel, over the spatial positions (Instance Norm's set)."""
    return StatSet("FilterResponseNorm", over_batch=False, groups=None, start_dim=2)


def filter_response_norm(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    tau: Array | None = None,
    eps: float = 1e-6,
) -> Array:
    """FRN (and TLU if ``tau`` is given) of ``x``.

    Args:
        x: ``(N, C, *spatial)`` with at least one spatial axis, float.
        weight, bias, tau: ``(C,)`` or None (γ = 1, β = 0, no threshold).
        eps: ε > 0 added to ν².

    Returns an array of the shape and dtype of ``x``; NumPy in gives NumPy
    out.  Raises ``TypeError`` for non-float input, ``ValueError`` for fewer
    than 3 dimensions, parameters not of shape ``(C,)``, or ``eps`` ≤ 0.

    >>> import numpy as np
    >>> x = np.array([[[[3.0, 4.0]]]])            # nu^2 = (9 + 16) / 2 = 12.5
    >>> np.round(filter_response_norm(x, eps=1e-12), 4).tolist()
    [[[[0.8485, 1.1314]]]]
    """
    op = "filter_response_norm"
    chk.check_array(x, op)
    chk.check_min_ndim(x, op, 3)
    chk.check_eps(eps, op)
    C = int(x.shape[1])
    for name, p in (("weight", weight), ("bias", bias), ("tau", tau)):
        chk.check_param(p, [C], name, op, x)
    w = None if weight is None else channel_view(weight, x.ndim)
    b = None if bias is None else channel_view(bias, x.ndim)
    y, _ = normalize(x, frn_set(), eps, w, b, center=False)
    if tau is None:
        return y
    if isinstance(y, torch.Tensor):
        return torch.maximum(y, channel_view(tau, x.ndim))
    import numpy as np

    return np.maximum(y, channel_view(tau, x.ndim))


class FilterResponseNorm2d(nn.Module):
    """FRN + TLU over ``(N, C, H, W)``: use it in place of a norm layer *and* its ReLU.

    Args:
        num_features: C.
        eps: ε (default 1e-6, the paper's).
        tlu: if false, no threshold (plain FRN, followed by your own activation).

    Parameters ``weight`` (γ, ones), ``bias`` (β, zeros) and ``tau`` (τ, zeros;
    absent without TLU), each ``(C,)``; no buffers: training and eval compute
    the same thing.

    Raises ``ValueError`` for a bad ``num_features`` or ``eps`` at
    construction; the checks of :func:`filter_response_norm` and a channel
    count other than ``num_features`` at call time.

    Example::

        >>> frn = FilterResponseNorm2d(2)
        >>> y = frn(torch.randn(3, 2, 4, 4))
        >>> bool((y >= 0).all())     # tau = 0 at initialization: TLU is a ReLU
        True
    """

    def __init__(self, num_features: int, eps: float = 1e-6, tlu: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        op = "FilterResponseNorm2d"
        self.num_features = chk.check_positive_int(num_features, "num_features", op)
        chk.check_eps(eps, op)
        self.eps, self.tlu = eps, tlu
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(num_features, **kw))
        self.bias = nn.Parameter(torch.zeros(num_features, **kw))
        if tlu:
            self.tau = nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("tau", None)

    def forward(self, input: Tensor) -> Tensor:
        chk.check_ndim(input, type(self).__name__, (4,))
        chk.check_channels(input, self.num_features, type(self).__name__)
        return filter_response_norm(input, self.weight, self.bias, self.tau, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, tlu={self.tlu}"
