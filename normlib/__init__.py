"""normlib: Batch, Layer, Instance and Group Norm as one formula over a described set S.

The thesis, in three modules:

* :mod:`normlib.sets`: the description of S (:class:`~normlib.sets.StatSet`).
* :mod:`normlib.core`: the one statistics core, :func:`~normlib.core.normalize`.
* :mod:`normlib.functional` and :mod:`normlib.nn`: ``torch.nn.functional``'s and
  ``torch.nn``'s names, arguments and state, each method a choice of S.

Around it:

* :mod:`normlib.rms` (RMSNorm), :mod:`normlib.weight_norm`, :mod:`normlib.cosine_norm`,
  :mod:`normlib.weight_standardization`: the other normalizers of the book;
* :mod:`normlib.distributed`: exact merging of statistics and cross-process Batch Norm;
* :mod:`normlib.practice`: helpers for the mistakes of the practice chapter;

The book's own helpers (pictures, experiments, timings, the source articles'
data) live in the sibling package :mod:`normbook`, which depends on normlib and
never the other way round.
"""
from . import core, functional, nn, sets
from .core import Moments, moments, normalize
from .sets import StatSet, batch_set, group_set, instance_set, layer_set

__version__ = "0.1.0"

__all__ = [
    "core",
    "functional",
    "nn",
    "sets",
    "Moments",
    "moments",
    "normalize",
    "StatSet",
    "batch_set",
    "group_set",
    "instance_set",
    "layer_set",
]
