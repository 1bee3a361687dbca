"""The small-batch fixes of Batch Norm on the batch-size chapter's digits experiment.

:mod:`normbook.digits_sweep` trains many copies of a small CNN as one stacked
network, one block of channels per copy.  This module adds the normalizers of
the chapter on small batches to that stack, without changing it:

* :func:`make_norm_act`: one layer that normalizes ``copies`` blocks of
  channels *and* applies the activation: Batch Norm (``BN``), Batch Renorm
  (``BRN``, :class:`normlib.batch_renorm.BatchRenorm2d`), Ghost Batch Norm over
  pairs of images (``GBN``, :class:`normlib.ghost_batch_norm.GhostBatchNorm2d`)
  and Group Norm (``GN``) followed by a ReLU; Filter Response Norm with its TLU
  (``FRN``, :class:`normlib.filter_response_norm.FilterResponseNorm2d`), whose
  learned threshold replaces the ReLU.
* :class:`SmallBatchCNN`: :class:`normbook.digits_sweep.StackedCNN` (same
  weights, same initialization per seed) with those layers.
* :func:`run_small_batch_sweep`: one stack per batch size trained with
  :func:`normbook.digits_sweep.train_stack`; Batch Renorm's clipping schedule
  is set from the number of steps; the Batch Norm copies are also evaluated
  with recomputed population statistics (``BN+pop``,
  :func:`normlib.precise_bn.recompute_bn_statistics`).
* :func:`format_table`: the method × batch size table, mean ± spread over seeds.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from normlib import nn as nnn
from normlib.batch_renorm import BatchRenorm2d
from normlib.filter_response_norm import FilterResponseNorm2d
from normlib.ghost_batch_norm import GhostBatchNorm2d
from normlib.precise_bn import recompute_bn_statistics

from .digits_sweep import (Digits, StackedCNN, StackedNorm, SweepResult, evaluate, fork_map, one_thread,
                           train_stack)

__all__ = [
    "METHODS",
    "make_norm_act",
    "SmallBatchCNN",
    "SmallBatchResult",
    "run_small_batch_sweep",
    "format_table",
    "as_float64",
]

#: The trained methods; ``BN+pop`` (the BN copies with recomputed statistics) is added by the sweep.
METHODS = ("BN", "BRN", "GBN", "FRN", "GN")


class _NormThenReLU(nn.Sequential):
    """A normalization layer followed by a ReLU."""


def make_norm_act(
    method: str,
    copies: int,
    channels: int,
    *,
    ghost_batch_size: int = 2,
    renorm: dict | None = None,
    channels_per_group: int = 4,
) -> nn.Module:
    """Normalization and activation for ``copies`` blocks of ``channels`` channels.

    ``renorm`` holds :class:`~normlib.batch_renorm.BatchRenorm2d`'s keyword
    arguments (limits, schedule, momentum).  Raises ``ValueError`` for an
    unknown method.
    """
    total = copies * channels
    if method == "FRN":
        return FilterResponseNorm2d(total)  # its TLU is the activation
    if method == "BN":
        norm = nnn.BatchNorm2d(total)
    elif method == "BRN":
        norm = BatchRenorm2d(total, **(renorm or {}))
    elif method == "GBN":
        norm = GhostBatchNorm2d(total, ghost_batch_size)
    elif method == "GN":
        norm = nnn.GroupNorm(total // channels_per_group, total)
    else:
        raise ValueError(f"make_norm_act: unknown method {method!r}; expected one of {METHODS}")
    return _NormThenReLU(norm, nn.ReLU())


class SmallBatchCNN(StackedCNN):
    """:class:`~normbook.digits_sweep.StackedCNN` whose layers are :func:`make_norm_act`'s.

    Copy ``k = m·len(seeds) + s`` has method ``methods[m]`` and the initial
    weights of seed ``seeds[s]`` (those of every StackedCNN with that seed).
    Input ``(B, copies, 8, 8)``, logits ``(B, copies, 10)``.

    Raises ``ValueError`` for an unknown method.
    """

    def __init__(self, methods: Sequence[str], seeds: Sequence[int], **norm_kw) -> None:
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"SmallBatchCNN: unknown method {m!r}; expected one of {METHODS}")
        super().__init__(["BN"] * len(methods), seeds)  # the weights; the layers are replaced below
        self.methods = list(methods)
        S = len(self.seeds)
        self.norms = nn.ModuleList(
            StackedNorm([make_norm_act(m, S, c, **norm_kw) for m in self.methods], [S * c] * len(self.methods))
            for c in self.widths
        )

    @staticmethod
    def activation(x: Tensor) -> Tensor:
        """The identity: each of these layers applies its own activation (a ReLU, or FRN's TLU),
        so :meth:`features` returns the outputs after it."""
        return x


def as_float64(data: Digits) -> Digits:
    """The same split in float64 (training in float64 keeps results independent of the arithmetic path)."""
    return Digits(data.x_train.double(), data.y_train, data.x_test.double(), data.y_test)


class SmallBatchResult(SweepResult):
    """Test errors (%) ``errors[b, m, s]``: batch size b, method m (``methods``, with ``BN+pop``), seed s."""


@one_thread()
def _with_population_stats(model: SmallBatchCNN, x: Tensor, batch_size: int = 128) -> SmallBatchCNN:
    twin = copy.deepcopy(model)
    batch_size = min(batch_size, len(x))
    n = len(x) - len(x) % batch_size
    xs = x[:n].expand(-1, twin.copies, -1, -1)
    recompute_bn_statistics(twin, [xs[k : k + batch_size] for k in range(0, n, batch_size)])
    return twin.eval()


def _train_batch_size(job: tuple) -> np.ndarray:
    """One batch size of :func:`run_small_batch_sweep`: test errors ``(rows, seeds)``, on one thread."""
    data, methods, seeds, b, epochs, renorm, ghost_batch_size, dtype = job
    S, n = len(seeds), len(data.y_train)
    steps = epochs * n // b
    kw = {"r_max": 3.0, "d_max": 5.0, "warmup_steps": steps // 4, "ramp_steps": steps // 4}
    kw.update(renorm or {})
    errors = np.zeros((len(methods) + ("BN" in methods), S))
    with one_thread():
        model = SmallBatchCNN(methods, seeds, renorm=kw, ghost_batch_size=min(ghost_batch_size, b)).to(dtype)
        errors[: len(methods)] = train_stack(model, data, b, epochs).reshape(len(methods), S)
        if "BN" in methods:
            j = list(methods).index("BN")
            pop = evaluate(_with_population_stats(model, data.x_train), data.x_test, data.y_test)
            errors[-1] = pop[j * S : (j + 1) * S]
    return errors


def run_small_batch_sweep(
    data: Digits,
    methods: Sequence[str] = METHODS,
    batch_sizes: Sequence[int] = (32, 8, 4, 2),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 2,
    renorm: dict | None = None,
    ghost_batch_size: int = 2,
    dtype: torch.dtype = torch.float64,
    processes: int = 1,
) -> SmallBatchResult:
    """Train one :class:`SmallBatchCNN` per batch size and collect test errors (%).

    Batch Renorm's limits follow Ioffe's shape of schedule, scaled to the run:
    plain Batch Norm for the first quarter of the steps, then the limits grow
    linearly to ``r_max = 3``, ``d_max = 5`` by half of the steps (``renorm``
    overrides any of these keyword arguments).  After training, the ``BN``
    copies are evaluated a second time with running statistics recomputed over
    the training set in batches of 128 (row ``BN+pop``).  Trained in ``dtype``
    (float64 by default: outputs then do not depend on the arithmetic path).
    Each stack trains on one thread (see :class:`normbook.digits_sweep.one_thread`);
    with ``processes > 1`` the batch sizes are trained in that many forked
    worker processes (:func:`normbook.digits_sweep.fork_map`), the smallest
    batch (the most steps) first, with bitwise the same results.
    """
    if dtype == torch.float64:
        data = as_float64(data)
    rows = list(methods) + (["BN+pop"] if "BN" in methods else [])
    jobs = [(data, tuple(methods), tuple(seeds), b, epochs, renorm, ghost_batch_size, dtype) for b in batch_sizes]
    order = sorted(range(len(batch_sizes)), key=lambda i: batch_sizes[i])  # most steps first
    errors = np.zeros((len(batch_sizes), len(rows), len(seeds)))
    for i, err in fork_map(_train_batch_size, jobs, processes, order):
        errors[i] = err
    return SmallBatchResult(list(batch_sizes), rows, list(seeds), errors)


def format_table(result: SmallBatchResult, decimals: int = 1) -> str:
    """``method | error ± spread`` per batch size, one line per method, rounded to ``decimals``."""
    head = "method   " + "".join(f"{'batch ' + str(b):>14s}" for b in result.batch_sizes)
    lines = [head]
    for m in result.methods:
        cells = [f"{result.error(m, b):.{decimals}f} ± {result.spread(m, b):.{decimals}f}" for b in result.batch_sizes]
        lines.append(f"{m:8s} " + "".join(f"{c:>14s}" for c in cells))
    return "\n".join(lines)
