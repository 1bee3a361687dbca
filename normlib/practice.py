"""The practice chapter's helpers, under the name the chapter imports them by.

They live in two modules that say what they hold:

* :mod:`normlib.hyperparams`: :func:`torch_momentum` / :func:`keras_momentum`
  (the two momentum conventions) and :func:`param_groups_without_decay`;
* :mod:`normlib.frozen_batch_norm`: :class:`FrozenBatchNorm` and
  :func:`freeze_batch_norm`.
"""
from .frozen_batch_norm import FrozenBatchNorm, freeze_batch_norm
from .hyperparams import NORM_LAYERS, keras_momentum, param_groups_without_decay, torch_momentum

__all__ = [
    "torch_momentum",
    "keras_momentum",
    "FrozenBatchNorm",
    "freeze_batch_norm",
    "NORM_LAYERS",
    "param_groups_without_decay",
]
