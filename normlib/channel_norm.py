"""ConvNeXt's LayerNorm: statistics over the channels of one position.

ConvNeXt (Liu et al., 2022) normalizes a feature map ``(N, C, H, W)`` at every
sample and position over its ``C`` channels:

.. math::
    y_{nchw} = \\frac{x_{nchw} - \\mu_{nhw}}{\\sqrt{\\sigma^2_{nhw} + \\epsilon}}\\,\\gamma_c + \\beta_c,
    \\qquad \\mu_{nhw} = \\frac1C \\sum_{c'} x_{nc'hw},\\quad
    \\sigma^2_{nhw} = \\frac1C \\sum_{c'} (x_{nc'hw} - \\mu_{nhw})^2 .

The set S is :func:`normlib.sets.channel_set` (``|S| = C``).  It is neither
``LayerNorm([C, H, W])`` nor ``GroupNorm(1, C)``, whose one set per sample holds
all ``C·H·W`` entries: here each position is normalized on its own.  It is
what the "permute to channels-last, ``torch.nn.LayerNorm(C)``, permute back"
idiom computes (timm names the module ``LayerNorm2d``), written as one call of
the book's core on the channels-first tensor.
"""
from __future__ import annotations

from typing import Any

import torch  # the docstrings' examples run in this namespace
from torch import Tensor

from . import _checks as chk
from .core import normalize
from .nn import NormModule
from .sets import channel_set

__all__ = ["channel_layer_norm", "ChannelLayerNorm"]

Array = Any


def channel_layer_norm(
    input: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-6,
) -> Array:
    r"""Layer Norm over the channel axis of ``(N, C, *spatial)`` input, per sample and position.

    .. math::  y = \frac{x - \mu_{n,\text{pos}}}{\sqrt{\sigma^2_{n,\text{pos}} + \epsilon}}\,\gamma_c + \beta_c

    Args:
        input: array of shape ``(N, C, *spatial)`` (at least 2-D), floating point;
            a NumPy array gives a NumPy result.
        weight: optional per-channel scale ``γ`` of shape ``(C,)``.
        bias: optional per-channel shift ``β`` of shape ``(C,)``.
        eps: added to the variance (ConvNeXt's default ``1e-6``).

    Returns an array of the shape and dtype of ``input``.

    Raises: ``TypeError`` for non-float input; ``ValueError`` for fewer than 2
    dimensions, a ``weight``/``bias`` not of shape ``(C,)``, or ``eps`` ≤ 0.

    Example::

        >>> import numpy as np
        >>> x = np.array([[[[1.0]], [[3.0]]]])          # N=1, C=2, H=W=1
        >>> channel_layer_norm(x, eps=1e-12).ravel().round(6).tolist()
        [-1.0, 1.0]
    """
    op = "channel_layer_norm"
    chk.check_array(input, op)
    chk.check_min_ndim(input, op, 2)
    chk.check_eps(eps, op)
    C = int(input.shape[1])
    chk.check_param(weight, [C], "weight", op, input)
    chk.check_param(bias, [C], "bias", op, input)
    along_c = (C,) + (1,) * (input.ndim - 2)  # per-channel parameters broadcast over positions
    w = None if weight is None else weight.reshape(along_c)
    b = None if bias is None else bias.reshape(along_c)
    y, _ = normalize(input, channel_set(), eps, w, b)
    return y


class ChannelLayerNorm(NormModule):
    r"""ConvNeXt's LayerNorm for channels-first input (timm's ``LayerNorm2d``).

    .. math::  y_{n,:,p} = \operatorname{LN}(x_{n,:,p})\odot\gamma + \beta
               \quad\text{for every sample } n \text{ and position } p

    Args:
        num_channels: ``C``, the size of axis 1 of the input.
        eps: added to the variance (default ``1e-6``, ConvNeXt's).
        elementwise_affine: if true, ``weight`` (ones) and ``bias`` (zeros) of
            shape ``(C,)``.
        bias: with ``elementwise_affine``, whether to keep the ``bias``.

    Shapes: input ``(N, C, *spatial)``, output the same.  ``state_dict`` keys
    are ``weight`` and ``bias`` of shape ``(C,)``, those of ``torch.nn.LayerNorm(C)``,
    so a trained channels-last LayerNorm loads into it with ``strict=True``.

    Example::

        >>> m = ChannelLayerNorm(4)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> ref = torch.nn.LayerNorm(4, eps=1e-6)(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        >>> torch.allclose(m(x), ref, atol=1e-6)
        True
    """

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-6,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        op = "ChannelLayerNorm"
        chk.check_eps(eps, op)
        self.num_channels = chk.check_positive_int(num_channels, "num_channels", op)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self._register_affine((self.num_channels,), elementwise_affine, bias, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        chk.check_array(input, "ChannelLayerNorm")
        if input.ndim >= 2:  # fewer dimensions: channel_layer_norm's own message says so
            chk.check_channels(input, self.num_channels, "ChannelLayerNorm")
        return channel_layer_norm(input, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
