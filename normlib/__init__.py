"""normlib: Batch, Layer, Instance and Group Norm as one formula over a described set S.

* :mod:`normlib.sets`: the description of S (:class:`~normlib.sets.StatSet`).
* :mod:`normlib.core`: the one statistics core, :func:`~normlib.core.normalize`.
* :mod:`normlib.functional`: ops with ``torch.nn.functional``'s signatures.
* :mod:`normlib.nn`: modules with ``torch.nn``'s names, arguments and state.
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
