r"""Weight Normalization (Salimans & Kingma, 2016) as a torch parametrization.

A layer's weight is written as a length times a direction,

.. math::  \mathbf w = g\,\frac{\mathbf v}{\lVert \mathbf v\rVert},

with one norm per slice along ``dim`` (``dim=0``: one per output unit of a
``Linear`` or output channel of a ``Conv``; the norm runs over every other
axis) or one for the whole tensor (``dim=None``).  The trained parameters are
``g`` (the length, shape of the weight with every axis but ``dim`` of size 1,
or ``()`` for ``dim=None``) and ``v`` (the direction, shape of the weight).

Why a parametrization (``torch.nn.utils.parametrize``) rather than a module
wrapper: the layer stays the same ``nn.Linear``/``nn.Conv2d`` (its ``forward``,
``bias``, ``in_features``... are untouched), any layer with a ``weight`` works
without one wrapper per layer type, autograd differentiates through ``g`` and
``v``, and the parameters get the names PyTorch's own
``torch.nn.utils.parametrizations.weight_norm`` gives them
(``parametrizations.weight.original0`` = g, ``original1`` = v), so state dicts
load both ways.  ``remove_parametrizations(m, "weight")`` folds ``w`` back into
a plain weight.

Differences from PyTorch, both deliberate:

* ``||v||`` is clamped below by ``eps`` (default ``1e-12``), so a zero-norm
  slice of ``v`` gives a zero weight instead of NaN.  For any slice with
  ``||v|| > eps`` the numbers are PyTorch's.
* ``dim=-1`` is rejected: PyTorch reads ``dim=-1`` as "the whole tensor" (the
  same as ``dim=None``), not as the last axis; pass ``None`` or
  ``weight.ndim - 1`` to say which one you mean.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .reference import moments
from .sets import batch_set

__all__ = [
    "weight_norm_weight",
    "WeightNorm",
    "weight_norm",
    "remove_weight_norm",
    "data_dependent_init",
]


def _check_dim(dim: int | None, ndim: int, op: str) -> int | None:
    """Canonical ``dim`` (non-negative) or None; raises for -1, bools and out-of-range."""
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{op}: dim must be an int or None, got {dim!r}")
    if dim == -1:
        raise ValueError(
            f"{op}: dim=-1 is ambiguous: PyTorch's weight_norm reads it as the whole tensor "
            f"(dim=None), not the last axis; pass dim=None or dim={ndim - 1}"
        )
    if not -ndim <= dim < ndim:
        raise IndexError(
            f"{op}: dim out of range: expected dim in [-{ndim}, {ndim - 1}] or None "
            f"for a weight with {ndim} dimensions, got dim={dim}"
        )
    return dim % ndim


def _norm_except_dim(v: Tensor, dim: int | None) -> Tensor:
    """L2 norm of ``v`` over every axis but ``dim`` (keepdim), or over all axes (0-D) if None."""
    if dim is None:
        return torch.linalg.vector_norm(v)
    axes = [a for a in range(v.ndim) if a != dim]
    if not axes:  # a 1-D weight normalized along its only axis: each entry is its own slice
        return v.abs()
    return torch.linalg.vector_norm(v, dim=axes, keepdim=True)


def weight_norm_weight(v: Tensor, g: Tensor, dim: int | None = 0, eps: float = 1e-12) -> Tensor:
    r"""The weight ``w = g · v / max(||v||, eps)``, norms over every axis but ``dim``.

    Shapes: ``v`` any shape with ``ndim >= 1``; ``g`` of shape ``(1, ..., v.shape[dim], ..., 1)``
    (``v.ndim`` axes) for an integer ``dim``, or a 0-D tensor for ``dim=None``.
    Returns a tensor of ``v``'s shape.

    Raises: ``TypeError`` for non-float ``v`` or ``g``; ``IndexError`` for ``dim`` out of
    range; ``ValueError`` for ``dim=-1`` (see the module docstring), a 0-D ``v``, ``g`` of
    the wrong shape or ``eps <= 0``.

    >>> v = torch.tensor([[3.0, 4.0], [1.0, 0.0]]); g = torch.tensor([[2.0], [5.0]])
    >>> weight_norm_weight(v, g).tolist()
    [[1.2000000476837158, 1.600000023841858], [5.0, 0.0]]
    """
    op = "weight_norm"
    for name, t in (("v", v), ("g", g)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise TypeError(f"{op}: expected {name} to be a floating-point torch.Tensor, got {type(t).__name__}"
                            + (f" of dtype {t.dtype}" if isinstance(t, Tensor) else ""))
    if v.ndim == 0:
        raise ValueError(f"{op}: expected a weight v with at least 1 dimension, got a 0-D tensor")
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0):
        raise ValueError(f"{op}: eps must be a number > 0, got eps={eps!r}")
    d = _check_dim(dim, v.ndim, op)
    expected = [] if d is None else [v.shape[a] if a == d else 1 for a in range(v.ndim)]
    if list(g.shape) != expected:
        raise ValueError(
            f"{op}: expected g of shape {expected} for v of shape {list(v.shape)} and dim={dim}, "
            f"got g of shape {list(g.shape)}"
        )
    return v * (g / _norm_except_dim(v, d).clamp_min(eps))


class WeightNorm(nn.Module):
    """The parametrization ``(g, v) ↦ g · v / ||v||`` registered on a module's weight.

    ``right_inverse(w)`` returns ``(||w||, w)`` (norms over every axis but ``dim``), so
    registering it leaves the layer's function unchanged: ``g`` starts at the weight's
    norms and ``v`` at the weight itself, as in PyTorch.
    """

    def __init__(self, dim: int | None = 0, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return weight_norm_weight(weight_v, weight_g, self.dim, self.eps)

    def right_inverse(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        d = _check_dim(self.dim, weight.ndim, "weight_norm")
        return _norm_except_dim(weight, d), weight

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


def weight_norm(module: nn.Module, name: str = "weight", dim: int | None = 0, eps: float = 1e-12) -> nn.Module:
    """Reparameterize ``module.<name>`` as ``g · v / ||v||`` in place and return the module.

    Same parameters, names and ``dim`` convention as
    ``torch.nn.utils.parametrizations.weight_norm``: ``dim=0`` (default) gives one
    length per output unit/channel, ``dim=None`` one length for the whole tensor;
    ``module.parametrizations.<name>.original0`` is ``g``, ``original1`` is ``v``.

    Raises: ``TypeError`` if ``module`` is not an ``nn.Module``; ``AttributeError`` if it has
    no floating-point parameter ``name`` (or it is already parametrized); ``IndexError``/
    ``ValueError`` for a bad ``dim`` (checked before anything is registered).

    >>> m = weight_norm(nn.Linear(3, 2))
    >>> tuple(m.parametrizations.weight.original0.shape), tuple(m.parametrizations.weight.original1.shape)
    ((2, 1), (2, 3))
    """
    op = "weight_norm"
    if not isinstance(module, nn.Module):
        raise TypeError(f"{op}: expected an nn.Module, got {type(module).__name__}")
    if parametrize.is_parametrized(module, name):
        raise AttributeError(f"{op}: {type(module).__name__}.{name} is already parametrized")
    p = getattr(module, name, None)
    if not isinstance(p, nn.Parameter) or not p.dtype.is_floating_point:
        raise AttributeError(
            f"{op}: {type(module).__name__} has no floating-point parameter named {name!r}"
        )
    if p.ndim == 0:
        raise ValueError(f"{op}: expected a weight with at least 1 dimension, got a 0-D {name!r}")
    _check_dim(dim, p.ndim, op)
    parametrize.register_parametrization(module, name, WeightNorm(dim, eps), unsafe=True)
    return module


def remove_weight_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold ``g · v / ||v||`` back into a plain parameter ``module.<name>``; return the module."""
    if not parametrize.is_parametrized(module, name):
        raise ValueError(f"remove_weight_norm: {type(module).__name__}.{name} is not parametrized")
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return module


@torch.no_grad()
def data_dependent_init(module: nn.Module, x: Tensor, name: str = "weight", eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    r"""Salimans & Kingma's data-dependent initialization of a weight-normalized layer.

    With ``g = 1`` and ``b = 0`` the layer's pre-activations on the batch ``x`` are
    ``t = (v · x) / ||v||``; per output unit (channel), over the batch and every spatial
    position, take their mean :math:`\mu` and biased standard deviation :math:`\sigma`
    and set

    .. math::  g \leftarrow \frac{1}{\sqrt{\sigma^2 + \epsilon}}, \qquad
               b \leftarrow -\frac{\mu}{\sqrt{\sigma^2 + \epsilon}},

    so the layer's outputs on ``x`` have zero mean and unit variance per unit.  ``v`` is
    kept.  Returns ``(mu, sqrt(sigma^2 + eps))`` of ``t`` per unit (shape ``(out,)``).

    Shapes: ``module`` a weight-normalized (``dim=0``) ``Linear`` or ``Conv``; ``x`` a batch
    the module accepts, output ``(N, out, *spatial)`` or ``(N, out)``.

    Raises: ``ValueError`` if ``module.<name>`` is not weight-normalized with ``dim=0``,
    if the module has no bias, or if the batch gives a single value per unit; any error
    of the forward pass on ``x`` propagates.  On an error ``g`` and ``b`` are left unchanged.
    """
    op = "data_dependent_init"
    if not parametrize.is_parametrized(module, name) or not isinstance(
        module.parametrizations[name][0], WeightNorm
    ):
        raise ValueError(f"{op}: {type(module).__name__}.{name} is not weight-normalized; call weight_norm first")
    wn = module.parametrizations[name][0]
    if wn.dim not in (0, -module.parametrizations[name].original1.ndim):
        raise ValueError(f"{op}: needs one length per output unit (dim=0), got dim={wn.dim}")
    bias = getattr(module, "bias", None)
    if not isinstance(bias, Tensor):
        raise ValueError(f"{op}: {type(module).__name__} has no bias to absorb the mean")
    g = module.parametrizations[name].original0
    saved = g.clone(), bias.clone()
    g.fill_(1.0)
    bias.zero_()
    try:  # the forward pass with g = 1, b = 0 and the checks on its output
        t = module(x)
        if t.ndim < 2:
            raise ValueError(f"{op}: expected the layer's output to be (N, out, *spatial), got shape {list(t.shape)}")
        n = t.numel() // t.shape[1]
        if n <= 1:
            raise ValueError(f"{op}: Expected more than 1 value per unit, got output of shape {list(t.shape)}")
    except Exception:  # leave the layer as it was
        g.copy_(saved[0])
        bias.copy_(saved[1])
        raise
    m = moments(t, batch_set())  # per unit, over the batch and every position: the reference core
    mean = m.mean.reshape(-1)
    std = m.var.reshape(-1).add(eps).sqrt()
    g.copy_((1.0 / std).reshape(g.shape))
    bias.copy_(-mean / std)
    return mean, std
