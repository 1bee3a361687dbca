r"""Cosine Normalization (Luo et al., 2018): a layer that outputs cos(w, x).

A neuron's dot product ``w · x`` is unbounded; Cosine Normalization replaces it by

.. math::  y_j = \cos\theta_j = \frac{\mathbf w_j \cdot \mathbf x}
                 {\max(\lVert \mathbf w_j\rVert, \epsilon)\,\max(\lVert \mathbf x\rVert, \epsilon)},

which lies in ``[-1, 1]`` whatever the scale of ``x`` or ``w``.  The ``eps`` clamp is
the one of ``torch.nn.functional.normalize`` and ``cosine_similarity``: a zero vector
gives a zero output, not NaN.  The price: ``y`` does not change when ``x`` is
multiplied by any ``λ > 0``, so the layer cannot see the norm of its input.

For a convolution the vector ``x`` is the receptive-field patch under the kernel
(all input channels, ``kh × kw`` positions): its norm is the square root of the
convolution of ``x²`` with a kernel of ones.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _checks as chk

__all__ = ["cosine_linear", "cosine_conv2d", "CosineLinear", "CosineConv2d"]


def _check_operands(input: Tensor, weight: Tensor, eps: float, op: str) -> None:
    """Both operands floating-point tensors, ``eps`` valid: the checks both ops share."""
    chk.check_array(input, op, "input", torch_only=True)
    chk.check_array(weight, op, "weight", torch_only=True)
    chk.check_eps(eps, op)


def cosine_linear(input: Tensor, weight: Tensor, eps: float = 1e-8) -> Tensor:
    r"""``y[..., j] = cos(weight[j], input[...])``: a Linear layer with cosine in place of dot product.

    Shapes: ``input`` ``(*, in_features)`` with at least 1 dimension; ``weight``
    ``(out_features, in_features)``; output ``(*, out_features)``.

    Raises: ``TypeError`` for a non-tensor or non-float input/weight; ``ValueError`` for a
    0-D input, a weight that is not 2-D, a last input dimension different from
    ``in_features``, or ``eps <= 0``.

    >>> cosine_linear(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[1.0, 2.0, 2.0]])).tolist()
    [[0.3333333432674408]]
    """
    op = "cosine_linear"
    _check_operands(input, weight, eps, op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: expected a 2-D weight (out_features, in_features), got weight of shape {list(weight.shape)}")
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: Expected input of shape [*, {weight.shape[1]}] (in_features={weight.shape[1]}), "
            f"but got input of shape {list(input.shape)}"
        )
    x_hat = input / torch.linalg.vector_norm(input, dim=-1, keepdim=True).clamp_min(eps)
    w_hat = weight / torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min(eps)
    return x_hat @ w_hat.T


def cosine_conv2d(input: Tensor, weight: Tensor, stride: int = 1, padding: int = 0, eps: float = 1e-8) -> Tensor:
    r"""Cosine of each kernel ``weight[j]`` with each receptive-field patch of ``input``.

    ``y[n, j, h, w] = (w_j · p) / (max(||w_j||, eps) · max(||p||, eps))`` where ``p`` is the
    patch of ``input[n]`` (all channels, ``kh × kw``) under output position ``(h, w)``;
    ``||p||² = conv2d(input², ones)``.  Zero padding adds zeros to both the patch and its norm.

    Shapes: ``input`` ``(N, C_in, H, W)``; ``weight`` ``(C_out, C_in, kh, kw)``; output
    ``(N, C_out, H_out, W_out)`` as for ``torch.nn.functional.conv2d``.

    Raises: ``TypeError`` for non-float tensors; ``ValueError`` for an input that is not 4-D,
    a weight that is not 4-D, a channel mismatch, or ``eps <= 0``.
    """
    op = "cosine_conv2d"
    _check_operands(input, weight, eps, op)
    if input.ndim != 4:
        raise ValueError(f"{op}: expected 4D input (N, C, H, W) (got {input.ndim}D input of shape {list(input.shape)})")
    if weight.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight (C_out, C_in, kh, kw), got weight of shape {list(weight.shape)}")
    if input.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{op}: Expected input with {weight.shape[1]} channels to match weight of shape "
            f"{list(weight.shape)}, but got input of shape {list(input.shape)}"
        )
    w_hat = weight / torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True).clamp_min(eps)
    dots = F.conv2d(input, w_hat, stride=stride, padding=padding)
    ones = torch.ones((1, *weight.shape[1:]), dtype=input.dtype, device=input.device)
    patch_sq = F.conv2d(input * input, ones, stride=stride, padding=padding)
    return dots / patch_sq.clamp_min(0).sqrt().clamp_min(eps)


class CosineLinear(chk.NoTorchScript, nn.Module):
    r"""A Linear layer without bias whose outputs are cosines, :math:`y_j = \cos(\mathbf w_j, \mathbf x)`.

    .. math::
        y_j = \frac{\mathbf w_j \cdot \mathbf x}{\max(\lVert \mathbf w_j\rVert, \epsilon)\,
              \max(\lVert \mathbf x\rVert, \epsilon)} \in [-1, 1]

    The norms are L2 norms over the ``in_features`` axis of one sample (x) and of
    one output unit's weights (:math:`\mathbf w_j`); no statistic is taken over a
    batch, so training and eval compute the same thing (no estimator, no
    momentum).  The arithmetic is :func:`cosine_linear`.

    Args:
        in_features: size of each input sample's last axis.
        out_features: number of output units (cosines).
        eps: the lower clamp of both norms (a zero vector gives 0, not NaN).
            Default: ``1e-8``.

    Parameter ``weight`` of shape ``(out_features, in_features)``, initialized as
    ``nn.Linear``'s.

    Shape:
        - Input: :math:`(*, H_{in})` with :math:`H_{in}` = ``in_features``
        - Output: :math:`(*, H_{out})` with :math:`H_{out}` = ``out_features``

    Examples::

        >>> m = CosineLinear(4, 2)
        >>> x = torch.randn(3, 4)
        >>> bool((m(x).abs() <= 1 + 1e-6).all())
        True
        >>> torch.allclose(m(x), m(100.0 * x))                 # blind to the input's scale
        True
    """

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-8) -> None:
        super().__init__()
        in_features = chk.check_positive_int(in_features, "in_features", "CosineLinear")
        out_features = chk.check_positive_int(out_features, "out_features", "CosineLinear")
        chk.check_eps(eps, "CosineLinear")
        self.in_features, self.out_features, self.eps = in_features, out_features, eps
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, input: Tensor) -> Tensor:
        return cosine_linear(input, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, eps={self.eps}"


class CosineConv2d(chk.NoTorchScript, nn.Module):
    r"""A Conv2d layer without bias whose outputs are cosines of each kernel with each patch.

    .. math::
        y_{n,j,h,w} = \frac{\mathbf w_j \cdot \mathbf p_{n,h,w}}{\max(\lVert \mathbf w_j\rVert, \epsilon)\,
                      \max(\lVert \mathbf p_{n,h,w}\rVert, \epsilon)}

    where :math:`\mathbf p_{n,h,w}` is the receptive-field patch of sample ``n``
    under output position ``(h, w)`` (all input channels, ``kernel_size²``
    positions) and :math:`\mathbf w_j` the ``j``-th kernel.  No statistic is taken
    over a batch (no estimator, no momentum).  The arithmetic is
    :func:`cosine_conv2d`.

    Args:
        in_channels: :math:`C_{in}`.
        out_channels: :math:`C_{out}`, the number of kernels.
        kernel_size: side of the square kernel.
        stride: as ``nn.Conv2d``'s. Default: ``1``.
        padding: zero padding, as ``nn.Conv2d``'s. Default: ``0``.
        eps: the lower clamp of both norms. Default: ``1e-8``.

    Parameter ``weight`` of shape ``(C_out, C_in, kernel_size, kernel_size)``,
    initialized as ``nn.Conv2d``'s.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})`, as ``nn.Conv2d`` with the same arguments

    Examples::

        >>> m = CosineConv2d(3, 2, kernel_size=3, padding=1)
        >>> x = torch.randn(1, 3, 5, 5)
        >>> m(x).shape
        torch.Size([1, 2, 5, 5])
        >>> torch.allclose(m(x), m(7.0 * x), atol=1e-6)        # blind to the patch's scale
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, eps: float = 1e-8) -> None:
        super().__init__()
        in_channels = chk.check_positive_int(in_channels, "in_channels", "CosineConv2d")
        out_channels = chk.check_positive_int(out_channels, "out_channels", "CosineConv2d")
        kernel_size = chk.check_positive_int(kernel_size, "kernel_size", "CosineConv2d")
        chk.check_eps(eps, "CosineConv2d")
        self.stride, self.padding, self.eps = stride, padding, eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, input: Tensor) -> Tensor:
        return cosine_conv2d(input, self.weight, self.stride, self.padding, self.eps)
