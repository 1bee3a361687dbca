"""The set S: which entries of an activation share one mean and one variance.

Batch, Layer, Instance and Group Norm compute the same thing,

.. math::  \\hat x_i = \\frac{x_i - \\mu_{S_i}}{\\sqrt{\\sigma^2_{S_i} + \\epsilon}},

and differ only in the set :math:`S_i` of entries the statistics of entry
:math:`i` are taken over.  A :class:`StatSet` describes that set for an input of
shape ``(N, C, *spatial)`` (or any shape, for Layer Norm's trailing dimensions).
The same description drives the arithmetic (:meth:`StatSet.view_shape` and
:meth:`StatSet.reduce_axes` feed :func:`normlib.core.normalize`) and the pictures
(:meth:`StatSet.labels` colours the N, C, H×W cube).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._checks import check_positive_int

__all__ = [
    "StatSet",
    "batch_set",
    "layer_set",
    "instance_set",
    "group_set",
]


@dataclass(frozen=True)
class StatSet:
    """A description of the normalization set S.

    S contains every axis from ``start_dim`` to the last (negative values count
    from the end), plus:

    * the batch axis 0 if ``over_batch`` is true;
    * if ``groups`` is given, the channel axis 1 is cut into ``groups``
      contiguous groups of ``C // groups`` channels, and S runs over the
      channels of one group (``start_dim`` must then be 2).

    Examples (input ``(N, C, H, W)``):

    ===========  ============  ======  =========  ==========================
    method       over_batch    groups  start_dim  S for entry (n, c, h, w)
    ===========  ============  ======  =========  ==========================
    Batch Norm   True          None    2          all n, h, w of channel c
    Layer Norm   False         None    -k         the last k axes of sample n
    Instance     False         None    2          all h, w of (n, c)
    Group Norm   False         G       2          all h, w, c' in c's group
    ===========  ============  ======  =========  ==========================

    >>> group_set(1).labels((2, 4, 3)).tolist() == layer_set(2).labels((2, 4, 3)).tolist()
    True
    """

    name: str
    over_batch: bool = False
    groups: int | None = None
    start_dim: int = 2

    def __post_init__(self) -> None:
        if self.groups is not None:
            object.__setattr__(self, "groups", check_positive_int(self.groups, "groups", self.name))
            if self.start_dim != 2:
                raise ValueError(f"{self.name}: channel groups need start_dim=2, got {self.start_dim}")

    # -- the arithmetic ---------------------------------------------------
    def _start(self, ndim: int) -> int:
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        if not 0 <= start <= ndim:
            raise ValueError(
                f"{self.name}: start_dim={self.start_dim} is out of range for a {ndim}-D input"
            )
        return start

    def view_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the input is viewed as before reducing (only GN reshapes)."""
        shape = tuple(shape)
        if self.groups is None:
            return shape
        n, c, *rest = shape
        if c % self.groups:
            raise ValueError(
                f"{self.name}: Expected number of channels in input to be divisible by num_groups, "
                f"but got input of shape {list(shape)} and num_groups={self.groups}"
            )
        return (n, self.groups, c // self.groups, *rest)

    def reduce_axes(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Axes of the viewed input (``view_shape(shape)``) that S runs over, sorted."""
        ndim = len(shape)
        if self.groups is not None:
            # view is (N, G, C/G, *spatial): reduce C/G and every spatial axis
            axes = set(range(2, ndim + 1))
        else:
            axes = set(range(self._start(ndim), ndim))
        if self.over_batch:
            axes.add(0)
        return tuple(sorted(axes))

    def stat_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the mean and variance (the viewed shape with reduced axes dropped)."""
        view = self.view_shape(shape)
        axes = self.reduce_axes(shape)
        return tuple(s for i, s in enumerate(view) if i not in axes)

    def set_size(self, shape: tuple[int, ...]) -> int:
        """``|S|``: how many entries share one mean and variance."""
        view = self.view_shape(shape)
        return math.prod([view[i] for i in self.reduce_axes(shape)])

    # -- the picture ------------------------------------------------------
    def labels(self, shape: tuple[int, ...]) -> np.ndarray:
        """An integer array of ``shape``: entries with equal labels share their statistics.

        Computed from the same :meth:`view_shape` and :meth:`reduce_axes` as the
        arithmetic, so a picture drawn from it shows exactly the set the numbers
        were computed over.
        """
        view = self.view_shape(shape)
        axes = self.reduce_axes(shape)
        kept = [i for i in range(len(view)) if i not in axes]
        idx = np.indices(view)
        if not kept:
            return np.zeros(tuple(shape), dtype=np.int64)
        lab = np.ravel_multi_index(tuple(idx[i] for i in kept), tuple(view[i] for i in kept))
        return lab.reshape(shape)

    def mask(self, shape: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
        """Boolean array of ``shape``: True on the set S of the entry at ``index``."""
        lab = self.labels(shape)
        return lab == lab[tuple(index)]

    def describe(self, ndim: int = 4) -> str:
        """Plain-words name of S for an ``ndim``-D input: the axes S runs over, then what it is per.

        >>> batch_set().describe(4), instance_set().describe(4), layer_set(3).describe(4)
        ('N, H, W per C', 'H, W per N×C', 'C, H, W per N')
        >>> group_set(2).describe(3)
        'C/G, L per (sample, group)'
        """
        names = ["N", "C"] + [f"D{i}" for i in range(ndim - 2)]
        if ndim == 4:
            names = ["N", "C", "H", "W"]
        elif ndim == 3:
            names = ["N", "C", "L"]
        shape = tuple(range(2, 2 + ndim))
        axes = self.reduce_axes(shape)
        if self.groups is not None:
            parts = (["N"] if self.over_batch else []) + ["C/G"] + names[2:]
            return ", ".join(parts) + (" per group" if self.over_batch else " per (sample, group)")
        over = [names[i] for i in axes]
        per = [names[i] for i in range(ndim) if i not in axes]
        # no axes (e.g. Instance Norm of a 2-D input): each set is one entry
        return (", ".join(over) if over else "one entry") + (" per " + "×".join(per) if per else "")


def batch_set() -> StatSet:
    """Batch Norm: per channel, over the batch and every spatial position."""
    return StatSet("BatchNorm", over_batch=True, groups=None, start_dim=2)


def instance_set() -> StatSet:
    """Instance Norm: per sample and channel, over the spatial positions."""
    return StatSet("InstanceNorm", over_batch=False, groups=None, start_dim=2)


def group_set(num_groups: int) -> StatSet:
    """Group Norm: per sample and group of ``C // num_groups`` channels, over positions."""
    return StatSet("GroupNorm", over_batch=False, groups=num_groups, start_dim=2)


def layer_set(num_trailing: int) -> StatSet:
    """Layer Norm: per sample, over the last ``num_trailing`` axes (``len(normalized_shape)``)."""
    if num_trailing < 1:
        raise ValueError(f"LayerNorm: normalized_shape must have at least one dimension, got {num_trailing}")
    return StatSet("LayerNorm", over_batch=False, groups=None, start_dim=-int(num_trailing))
