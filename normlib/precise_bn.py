r"""Precise Batch Norm: the running statistics recomputed for the final weights.

During training, Batch Norm's running mean and variance are exponential moving
averages (EMA) of batch statistics taken while the weights were still moving:
the newest batches weigh most, but each was computed by a slightly different
network, and at small batches each is noisy.  Wu & Johnson (2021) call the fix
*precise BN*: after training, freeze the weights, run many batches through the
network in training mode and set each Batch Norm layer's statistics to the
population statistics of its input over all of them.  PyTorch ships the same
idea for weight averaging (``torch.optim.swa_utils.update_bn``: an average of
weights has no running statistics of its own, so they must be recomputed).

For batches :math:`j = 1..J` of sizes :math:`n_j` (values per channel) with
means :math:`m_j` and biased variances :math:`v_j`, :func:`recompute_bn_statistics`
sets, per channel,

.. math::
    \mu = \frac{\sum_j n_j m_j}{n}, \qquad
    \sigma^2 = \frac{1}{n - 1}\sum_j n_j\big(v_j + (m_j - \mu)^2\big), \qquad n = \sum_j n_j,

the mean and unbiased variance of all values seen (the law of total variance,
merged exactly as :mod:`normlib.distributed` merges shards).  With
``pooled=False`` it is ``update_bn``'s cumulative average instead: the plain
mean of the :math:`m_j` and of the unbiased batch variances, which misses the
spread of the batch means between batches.

Each layer's input is computed with the layers before it in training mode
(normalized by batch statistics), as in ``update_bn`` and precise BN.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from .distributed import Stats, merge_all, shard_stats
from .nn import _BATCH_NORM_TYPES

__all__ = ["recompute_bn_statistics", "batch_norm_layers"]


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """The Batch Norm layers of ``model`` that keep running statistics (torch's and normlib's)."""
    return [m for m in model.modules() if isinstance(m, _BATCH_NORM_TYPES) and m.running_mean is not None]


def _first(batch) -> Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable, *, pooled: bool = True) -> int:
    """Replace every Batch Norm layer's running statistics by those of ``batches``.

    Args:
        model: any module; its Batch Norm layers (``torch.nn`` or
            :mod:`normlib.nn`, with running statistics) are updated in place,
            nothing else changes (training mode and momenta are restored).
        batches: an iterable of input tensors, or of ``(input, ...)`` tuples
            (a ``DataLoader`` of ``(x, y)``); each is passed to ``model``.
        pooled: ``True`` for the exact mean and unbiased variance of all
            values (formula above); ``False`` for ``update_bn``'s average of
            the batches' means and unbiased variances.

    Returns the number of batches used.  ``num_batches_tracked`` counts them
    as the forward passes do.

    Raises ``ValueError`` if ``model`` has no Batch Norm layer with running
    statistics, or ``batches`` is empty.

    Example::

        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> bn = torch.nn.BatchNorm2d(2)
        >>> data = [torch.randn(4, 2, 3, 3) * 3 + 1 for _ in range(5)]
        >>> recompute_bn_statistics(bn, data)
        5
        >>> all_values = torch.cat(data).transpose(0, 1).reshape(2, -1)
        >>> torch.allclose(bn.running_var, all_values.var(dim=1), atol=1e-5)
        True
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(
            f"recompute_bn_statistics: {type(model).__name__} has no Batch Norm layer with running statistics"
        )
    seen: dict[int, list[Stats]] = {id(m): [] for m in layers}

    def record(module, args):
        x = args[0].detach().to(torch.float64)
        axes = (0,) + tuple(range(2, x.ndim))
        seen[id(module)].append(shard_stats(x, axes))

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    was_training = model.training
    saved = [(m, m.momentum, m.training) for m in layers]
    count = 0
    try:
        model.train()
        for batch in batches:
            model(_first(batch))
            count += 1
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
    if count == 0:
        raise ValueError("recompute_bn_statistics: batches is empty; expected at least one batch")
    for m in layers:
        parts = seen[id(m)]
        if pooled:
            total = merge_all(parts)
            mean, var = total.mean, total.var_unbiased
        else:
            mean = torch.stack([p.mean for p in parts]).mean(0)
            var = torch.stack([p.var_unbiased for p in parts]).mean(0)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
    return count
