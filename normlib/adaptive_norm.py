"""Conditional normalization: γ and β predicted from a condition.

Conditional Batch Norm (de Vries et al., 2017), FiLM (Perez et al., 2018),
AdaIN (Huang & Belongie, 2017) and DiT's adaLN / adaLN-Zero (Peebles & Xie,
2023) are one idea under five names: normalize without affine parameters, then
scale and shift each feature by amounts computed from a condition ``c`` (a
class embedding, a question, a style, a diffusion time step):

.. math::
    y = \\hat x \\odot (1 + \\gamma(c)) + \\beta(c), \\qquad
    (\\gamma(c), \\beta(c)) = W c + b,

with :math:`\\hat x` the normalized input over one of the book's sets S.  They
differ in the set S (Batch, Layer, Group, Instance Norm or RMSNorm: the
``norm`` argument) and in the map from ``c`` (here one linear layer; a model
may put an MLP or an embedding in front of it).  The ``1 +`` makes a zero
projection mean "the plain norm": with ``zero_init=True`` (the "-Zero" of
adaLN-Zero) the layer starts as an un-conditioned normalization.
:class:`AdaLNZero` adds DiT's third output, a gate on the residual branch,
so that a whole block starts as the identity.

FiLM and conditional BN write ``γ(c) x̂ + β(c)`` without the ``1 +``: the same
family (a bias of 1 in the projection), here written so that zero means "no
modulation".
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from . import _checks as chk
from . import functional as F
from .nn import GroupNorm, LayerNorm
from .rms import RMSNorm

__all__ = ["AdaptiveNorm", "AdaLNZero", "NORM_KINDS"]

#: The sets S the base normalization can use, and where the features sit.
NORM_KINDS = {
    "layer": "last",     # (N, *, F): Layer Norm over the last axis, as in DiT's adaLN
    "rms": "last",       # (N, *, F): RMSNorm over the last axis
    "group": "channel",  # (N, C, *): Group Norm with num_groups groups
    "instance": "channel",  # (N, C, *): Instance Norm (Group Norm with C groups): AdaIN
    "batch": "channel",  # (N, C, *): Batch Norm with running statistics: conditional BN
}


class AdaptiveNorm(nn.Module):
    r"""A normalization whose scale and shift are predicted from a condition.

    .. math::  y = \operatorname{norm}_S(x) \odot (1 + \gamma(c)) + \beta(c),
               \quad [\gamma(c), \beta(c)] = W c + b

    Args:
        num_features: ``F``, the size of the feature axis (the last axis for
            ``norm="layer"``/``"rms"``, axis 1 for ``"group"``/``"instance"``/``"batch"``).
        cond_features: ``D``, the size of the condition vector.
        norm: the base normalization, one of :data:`NORM_KINDS`.
        num_groups: the number of groups, required for ``norm="group"``.
        eps: added to the variance (mean square for ``"rms"``).
        zero_init: if true, ``W`` and ``b`` start at zero, so the layer starts
            as the plain normalization (adaLN-Zero's initialisation).
        momentum: running-statistics momentum for ``norm="batch"``.

    Shapes: ``x`` is ``(N, *, F)`` for ``"layer"``/``"rms"`` and ``(N, F, *)``
    otherwise; ``cond`` is ``(N, D)``; the output has the shape of ``x``.
    The projection is ``self.proj`` (``nn.Linear(D, 2F)``: γ first, then β).

    Raises ``ValueError`` for an unknown ``norm``, a missing ``num_groups``, a
    ``cond`` that is not ``(N, D)`` with the input's ``N``, or an input whose
    feature axis is not ``F``.

    Example::

        >>> ada = AdaptiveNorm(8, 3, norm="group", num_groups=2, zero_init=True)
        >>> x, c = torch.randn(4, 8, 5, 5), torch.randn(4, 3)
        >>> torch.allclose(ada(x, c), torch.nn.functional.group_norm(x, 2), atol=1e-6)  # W = 0
        True
    """

    n_outputs = 2  # γ, β

    def __init__(
        self,
        num_features: int,
        cond_features: int,
        norm: str = "layer",
        num_groups: int | None = None,
        eps: float = 1e-5,
        zero_init: bool = False,
        momentum: float = 0.1,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        op = type(self).__name__
        self.num_features = chk.check_positive_int(num_features, "num_features", op)
        self.cond_features = chk.check_positive_int(cond_features, "cond_features", op)
        if norm not in NORM_KINDS:
            raise ValueError(f"{op}: norm must be one of {sorted(NORM_KINDS)}, got norm={norm!r}")
        if norm == "group" and num_groups is None:
            raise ValueError(f"{op}: norm='group' needs num_groups, got num_groups=None")
        chk.check_eps(eps, op)
        chk.check_momentum(momentum, op)
        self.norm, self.eps, self.momentum, self.zero_init = norm, eps, momentum, zero_init
        kw = {"device": device, "dtype": dtype}
        F_ = self.num_features
        self.base: nn.Module | None
        if norm == "layer":
            self.base = LayerNorm(F_, eps=eps, elementwise_affine=False)
        elif norm == "rms":
            self.base = RMSNorm(F_, eps=eps, elementwise_affine=False)
        elif norm in ("group", "instance"):
            self.base = GroupNorm(F_ if norm == "instance" else num_groups, F_, eps=eps, affine=False)
        else:  # batch: the running statistics live here, the arithmetic in F.batch_norm
            self.base = None
            self.register_buffer("running_mean", torch.zeros(F_, **kw))
            self.register_buffer("running_var", torch.ones(F_, **kw))
        self.proj = nn.Linear(self.cond_features, self.n_outputs * F_, **kw)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    # -- pieces -----------------------------------------------------------
    def _check(self, x: Tensor, cond: Tensor) -> None:
        op = type(self).__name__
        chk.check_array(x, op)
        chk.check_array(cond, op)
        axis = -1 if NORM_KINDS[self.norm] == "last" else 1
        if x.ndim < 2 or x.shape[axis] != self.num_features:
            where = "the last axis" if axis == -1 else "dim 1"
            raise ValueError(f"{op}: expected input with {self.num_features} features at {where}, "
                             f"got input of shape {list(x.shape)}")
        if cond.ndim != 2 or cond.shape[1] != self.cond_features or cond.shape[0] != x.shape[0]:
            raise ValueError(f"{op}: expected cond of shape [{x.shape[0]}, {self.cond_features}] "
                             f"(N, cond_features), got cond of shape {list(cond.shape)} "
                             f"for input of shape {list(x.shape)}")

    def normalized(self, x: Tensor) -> Tensor:
        """``norm_S(x)`` without affine parameters."""
        if self.base is not None:
            return self.base(x)
        return F.batch_norm(x, self.running_mean, self.running_var, None, None,
                            self.training, self.momentum, self.eps)

    def modulation(self, cond: Tensor, x: Tensor) -> list[Tensor]:
        """The projection's outputs (γ, β, …), each ``(N, F)`` reshaped to broadcast against ``x``."""
        n, f = x.shape[0], self.num_features
        if NORM_KINDS[self.norm] == "last":
            shape = (n,) + (1,) * (x.ndim - 2) + (f,)
        else:
            shape = (n, f) + (1,) * (x.ndim - 2)
        return [p.reshape(shape) for p in self.proj(cond).chunk(self.n_outputs, dim=1)]

    def modulate(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return self.normalized(x) * (1 + gamma) + beta

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        self._check(x, cond)
        gamma, beta = self.modulation(cond, x)[:2]
        return self.modulate(x, gamma, beta)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, cond_features={self.cond_features}, norm={self.norm!r}, "
                f"eps={self.eps}, zero_init={self.zero_init}")


class AdaLNZero(AdaptiveNorm):
    r"""DiT's adaLN-Zero around a residual branch: a block that starts as the identity.

    .. math::
        y = x + g(c) \odot f\big(\operatorname{norm}_S(x) \odot (1 + \gamma(c)) + \beta(c)\big),
        \quad [\gamma, \beta, g] = W c + b, \quad W = 0,\ b = 0 \text{ at initialisation}

    Args: those of :class:`AdaptiveNorm` (``zero_init`` is always true; the
    projection is ``nn.Linear(D, 3F)``: γ, β, then the gate ``g``).

    ``forward(x, cond, branch)`` takes the residual branch ``f`` (a module or a
    function mapping ``x``'s shape to itself: attention, an MLP) and returns
    the block's output.  At initialisation ``g = 0``, so the output is ``x``
    exactly; what the block learns enters through ``g``.

    Example::

        >>> blk = AdaLNZero(8, 3)
        >>> x, c = torch.randn(2, 5, 8), torch.randn(2, 3)
        >>> torch.equal(blk(x, c, torch.nn.Linear(8, 8)), x)
        True
    """

    n_outputs = 3  # γ, β, gate

    def __init__(self, num_features: int, cond_features: int, norm: str = "layer", **kwargs) -> None:
        kwargs["zero_init"] = True
        super().__init__(num_features, cond_features, norm, **kwargs)

    def forward(self, x: Tensor, cond: Tensor, branch: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        self._check(x, cond)
        gamma, beta, gate = self.modulation(cond, x)
        return x + gate * branch(self.modulate(x, gamma, beta))
