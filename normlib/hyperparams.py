r"""Hyperparameters of normalization layers, set right: the momentum convention and weight decay.

* :func:`torch_momentum` / :func:`keras_momentum`: convert between the two
  momentum conventions of running statistics (PyTorch weights the new batch,
  Keras the old estimate).
* :func:`param_groups_without_decay`: optimizer parameter groups that exempt
  normalization scales and shifts (and biases) from weight decay.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn

from . import _checks as chk
from . import nn as nnn

__all__ = ["torch_momentum", "keras_momentum", "NORM_LAYERS", "param_groups_without_decay"]


def torch_momentum(keras_momentum: float) -> float:
    r"""PyTorch's momentum for a Keras/TensorFlow momentum.

    Keras weights the *old* value, PyTorch the *new* one:

    .. math:: r \leftarrow m_K\, r + (1 - m_K)\, \mu  \;=\; (1 - m_P)\, r + m_P\, \mu,
              \qquad m_P = 1 - m_K.

    Raises ``ValueError`` for a momentum outside [0, 1] (NaN, a bool or a string
    included), with the message of every other momentum check.

    >>> round(torch_momentum(0.99), 6)
    0.01
    """
    chk.check_momentum(keras_momentum, "torch_momentum", allow_none=False)
    return 1.0 - keras_momentum


def keras_momentum(torch_momentum: float) -> float:
    """Keras/TensorFlow momentum for a PyTorch momentum: ``1 − m_P`` (see :func:`torch_momentum`).

    >>> keras_momentum(0.25)
    0.75
    """
    chk.check_momentum(torch_momentum, "keras_momentum", allow_none=False)
    return 1.0 - torch_momentum


NORM_LAYERS: tuple[type, ...] = (
    nnn.BatchNorm1d,
    nnn.BatchNorm2d,
    nnn.BatchNorm3d,
    nnn.InstanceNorm1d,
    nnn.InstanceNorm2d,
    nnn.InstanceNorm3d,
    nnn.LayerNorm,
    nnn.GroupNorm,
    nnn.RMSNorm,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
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
