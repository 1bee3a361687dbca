"""Helpers for the mistakes practitioners make with normalization layers.

* :func:`torch_momentum` / :func:`keras_momentum`: convert between the two
  momentum conventions of running statistics.
* :class:`FrozenBatchNorm` and :func:`freeze_batch_norm`: Batch Norm layers whose
  statistics and affine parameters stay fixed through ``model.train()``.
* :func:`param_groups_without_decay`: optimizer parameter groups that exempt
  normalization parameters and biases from weight decay.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from . import _checks as chk
from . import functional as F
from . import nn as nnn

__all__ = [
    "torch_momentum",
    "keras_momentum",
    "FrozenBatchNorm",
    "freeze_batch_norm",
    "NORM_LAYERS",
    "param_groups_without_decay",
]


def _check_unit_interval(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: momentum must be a number in [0, 1], got {value!r}")


def torch_momentum(keras_momentum: float) -> float:
    r"""PyTorch's momentum for a Keras/TensorFlow momentum.

    Keras weights the *old* value, PyTorch the *new* one:

    .. math:: r \leftarrow m_K\, r + (1 - m_K)\, \mu  \;=\; (1 - m_P)\, r + m_P\, \mu,
              \qquad m_P = 1 - m_K.

    >>> round(torch_momentum(0.99), 6)
    0.01
    """
    _check_unit_interval(keras_momentum, "torch_momentum")
    return 1.0 - keras_momentum


def keras_momentum(torch_momentum: float) -> float:
    """Keras/TensorFlow momentum for a PyTorch momentum: ``1 − m_P`` (see :func:`torch_momentum`)."""
    _check_unit_interval(torch_momentum, "keras_momentum")
    return 1.0 - torch_momentum


class FrozenBatchNorm(nn.Module):
    r"""Batch Norm with fixed statistics and affine parameters, whatever the mode.

    .. math:: y = \frac{x - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}\,\gamma_c + \beta_c

    with ``running_mean`` :math:`\mu`, ``running_var`` :math:`\sigma^2`, ``weight``
    :math:`\gamma` and ``bias`` :math:`\beta` all stored as buffers, so neither the
    optimizer nor ``model.train()`` can move them.  The state_dict keys are those of
    ``BatchNorm*d`` (a saved ``num_batches_tracked`` is accepted and dropped).

    Shapes: input (N, C, \*); buffers (C,).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        num_features = chk.check_positive_int(num_features, "num_features", "FrozenBatchNorm")
        chk.check_eps(eps, "FrozenBatchNorm")
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batch_norm(cls, bn: nn.Module) -> "FrozenBatchNorm":
        """A frozen copy of a ``normlib.nn`` or ``torch.nn`` ``BatchNorm*d``."""
        if getattr(bn, "running_mean", None) is None:
            raise ValueError(
                f"FrozenBatchNorm: {type(bn).__name__} has no running statistics "
                "(track_running_stats=False); there is nothing to freeze"
            )
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
        return frozen.to(bn.running_mean.device)

    def forward(self, input: Tensor) -> Tensor:
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


_BATCH_NORMS = (nnn.BatchNorm1d, nnn.BatchNorm2d, nnn.BatchNorm3d, nn.modules.batchnorm._BatchNorm)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every Batch Norm layer in ``module`` by a :class:`FrozenBatchNorm`.

    Returns the module (or the frozen replacement, if ``module`` itself is a
    Batch Norm layer).  The result behaves the same in ``train()`` and
    ``eval()``: the running statistics no longer move and γ, β get no gradient.
    """
    if isinstance(module, _BATCH_NORMS):
        return FrozenBatchNorm.from_batch_norm(module)
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module


NORM_LAYERS: tuple[type, ...] = (
    nnn.BatchNorm1d,
    nnn.BatchNorm2d,
    nnn.BatchNorm3d,
    nnn.InstanceNorm1d,
    nnn.InstanceNorm2d,
    nnn.InstanceNorm3d,
    nnn.LayerNorm,
    nnn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)
"""Module types whose parameters are normalization scales and shifts (extendable)."""


def param_groups_without_decay(
    model: nn.Module,
    weight_decay: float,
    norm_layers: Iterable[type] = NORM_LAYERS,
) -> list[dict]:
    """Optimizer parameter groups: weight decay for weights, none for norm parameters and biases.

    A parameter goes to the no-decay group if it belongs to a module of one of
    ``norm_layers`` (γ and β) or if its name is ``bias``.  Every trainable
    parameter appears in exactly one group.

    >>> groups = param_groups_without_decay(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), 1e-2)
    >>> [(g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in groups]
    [(0.01, [(4, 3)]), (0.0, [(4,), (4,), (4,)])]
    """
    if not weight_decay >= 0:
        raise ValueError(f"param_groups_without_decay: weight_decay must be >= 0, got {weight_decay!r}")
    norm_layers = tuple(norm_layers)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, norm_layers)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
