r"""Building blocks for deep residual networks trained without normalization layers.

A residual block adds a branch to its input, :math:`x_{i+1} = x_i + f_i(x_i)`.
With the usual (He) initialization each branch roughly preserves the variance of
its input, so the variance of the stream doubles per block and grows like
:math:`2^L` with depth; Batch Norm in the branch keeps it to about
:math:`1 + L`.  The methods here bound it without normalizing:

* :class:`SkipInit` (De & Smith 2020): ``x + α·f(x)`` with a scalar ``α``
  initialized to 0, so every block starts as the identity (the same effect as
  initializing the last Batch Norm's γ of each branch to 0, Goyal et al. 2017).
* :func:`fixup_scale` and :func:`fixup_init_` (Zhang et al. 2019, Fixup): zero the
  last layer of each branch and scale the other layers of the branch by
  :math:`L^{-1/(2m-2)}` (``L`` branches of ``m`` layers).
* :func:`scaled_standardize_weight` (Brock et al. 2021a, NF-ResNets): Weight
  Standardization (:mod:`normlib.weight_standardization`) divided by
  :math:`\sqrt{\text{fan-in}}` and multiplied by the gain of the activation, so a
  layer preserves the variance of its input at every step of training, not only
  at initialization.
* :func:`adaptive_grad_clip_` (Brock et al. 2021b, NFNets): clip each unit's
  gradient where it is large relative to the unit's weights.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from . import _checks as chk
from .weight_standardization import standardize_weight

__all__ = [
    "SkipInit",
    "fixup_scale",
    "fixup_init_",
    "RELU_GAIN",
    "scaled_standardize_weight",
    "unitwise_norm",
    "adaptive_grad_clip_",
]

#: The gain γ of ReLU for scaled WS: ``1/std(relu(z))`` for ``z ~ N(0, 1)``,
#: ``sqrt(2 / (1 - 1/π))`` (Brock et al. 2021a), so ``relu`` then a scaled-WS
#: layer keeps unit variance.
RELU_GAIN = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


class SkipInit(nn.Module):
    """A residual block ``y = x + α·branch(x)`` with a learned scalar ``α`` (initialized to ``alpha``).

    Args:
        branch: the residual branch, a module mapping ``x`` to its own shape.
        alpha: initial value of ``α`` (0: the block starts as the identity).

    Shapes: whatever ``branch`` takes; the output has the input's shape.
    ``state_dict``: ``alpha`` plus ``branch.*``.

    Raises ``ValueError`` if the branch changes the shape.

    Example::

        >>> block = SkipInit(nn.Linear(4, 4))
        >>> x = torch.randn(2, 4)
        >>> torch.equal(block(x), x)     # alpha = 0 at initialization
        True
    """

    def __init__(self, branch: nn.Module, alpha: float = 0.0) -> None:
        super().__init__()
        self.branch = branch
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: Tensor) -> Tensor:
        f = self.branch(x)
        if f.shape != x.shape:
            raise ValueError(
                f"SkipInit: the branch maps input of shape {list(x.shape)} to shape {list(f.shape)}; "
                f"a residual branch must keep the shape"
            )
        return x + self.alpha * f


def fixup_scale(num_branches: int, layers_per_branch: int) -> float:
    """Fixup's factor ``L^(-1/(2m-2))`` for the weights of a branch's first ``m - 1`` layers.

    >>> fixup_scale(16, 2)    # m = 2 layers per branch: L^(-1/2)
    0.25
    """
    L = chk.check_positive_int(num_branches, "num_branches", "fixup_scale")
    m = chk.check_positive_int(layers_per_branch, "layers_per_branch", "fixup_scale")
    if m < 2:
        raise ValueError(f"fixup_scale: layers_per_branch must be >= 2 (the last one is zeroed), got {m}")
    return float(L ** (-1.0 / (2 * m - 2)))


@torch.no_grad()
def fixup_init_(branch_layers: Sequence[nn.Module], num_branches: int) -> None:
    """Fixup's initialization of one residual branch, in place.

    ``branch_layers`` are the branch's weight layers in order (each with a
    ``weight``, already initialized, e.g. He); the last one's weight (and bias)
    becomes zero, the others' weights are multiplied by
    :func:`fixup_scale` ``(num_branches, len(branch_layers))``.  (Fixup also adds
    scalar biases and a scalar multiplier to each branch; those are ordinary
    parameters of the model, not part of the initialization.)

    Raises ``ValueError`` for fewer than 2 layers or a layer without ``weight``.
    """
    layers = list(branch_layers)
    for i, layer in enumerate(layers):
        if getattr(layer, "weight", None) is None:
            raise ValueError(f"fixup_init_: branch layer {i} ({type(layer).__name__}) has no weight")
    scale = fixup_scale(num_branches, len(layers))
    for layer in layers[:-1]:
        layer.weight.mul_(scale)
    layers[-1].weight.zero_()
    if getattr(layers[-1], "bias", None) is not None:
        layers[-1].bias.zero_()


def scaled_standardize_weight(weight: Tensor, gain: float = RELU_GAIN, eps: float = 1e-4) -> Tensor:
    r"""Scaled Weight Standardization: :math:`\hat W = \text{gain}\,(W - \mu)/(\sigma \sqrt{N})`.

    ``μ``, ``σ`` over each output unit's ``N = fan-in`` entries
    (:func:`normlib.weight_standardization.standardize_weight`); shapes
    ``(C_out, *rest)`` in and out.  For ``z`` with independent unit-variance
    entries, ``Ŵ·relu(z)`` then has unit variance per output.  (NF-Nets also
    multiply by a learned per-channel gain, initialized to 1: a parameter of the
    layer that uses this.)

    Raises the errors of ``standardize_weight``.
    """
    fan_in = math.prod(weight.shape[1:])
    return standardize_weight(weight, eps) * (gain / math.sqrt(fan_in))


def unitwise_norm(x: Tensor) -> Tensor:
    """The norm of each output unit: over every axis but the first; of the whole tensor for 0-D and 1-D.

    Returns a tensor broadcastable against ``x`` (``(C_out, 1, ...)``, or a scalar).
    """
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_grad_clip_(parameters: Iterable[Tensor], clipping: float = 0.01, eps: float = 1e-3) -> int:
    r"""Adaptive gradient clipping (AGC), in place: for each unit ``i`` of each parameter,

    .. math::
        G_i \leftarrow G_i \cdot \frac{\lambda \max(\lVert W_i\rVert, \epsilon)}{\lVert G_i\rVert}
        \quad \text{if } \frac{\lVert G_i\rVert}{\max(\lVert W_i\rVert, \epsilon)} > \lambda,

    with unit-wise norms (:func:`unitwise_norm`: a row of a linear weight, a
    filter of a convolution, the whole tensor for biases and gains).  A step
    then changes no unit's weights by more than the fraction ``λ = clipping``
    of their norm (times the learning rate).  ``ε`` keeps zero-initialized
    weights from freezing.  Brock et al. do not clip the final classifier.

    Args:
        parameters: tensors (parameters with ``.grad``; those without are skipped).
        clipping: λ > 0 (NFNets: 0.01 to 0.16, smaller for larger batches).
        eps: ε > 0.

    Returns how many units were clipped.  Raises ``ValueError`` for
    ``clipping`` or ``eps`` not a finite number > 0.

    Example::

        >>> w = nn.Parameter(torch.ones(2, 3))
        >>> w.grad = torch.tensor([[1.0, 0.0, 0.0], [0.001, 0.0, 0.0]])
        >>> adaptive_grad_clip_([w], clipping=0.01)
        1
        >>> round(float(w.grad[0].norm() / w.detach()[0].norm()), 6)  # 1 % of the row's norm
        0.01
    """
    if not isinstance(clipping, (int, float)) or isinstance(clipping, bool) or not 0 < clipping < math.inf:
        raise ValueError(f"adaptive_grad_clip_: clipping must be a finite number > 0, got clipping={clipping!r}")
    chk.check_eps(eps, "adaptive_grad_clip_")
    clipped = 0
    for p in parameters:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p).clamp_min(eps) * clipping
        g_norm = unitwise_norm(p.grad)
        over = g_norm > max_norm
        factor = torch.where(over, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
        p.grad.mul_(factor)
        clipped += int(over.sum())
    return clipped
