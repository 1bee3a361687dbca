"""The shared count check :func:`normlib._checks.check_positive_int` and every place that uses it.

One rule everywhere: Python and NumPy integers >= 1 are accepted (and stored as
plain ``int``); ``bool``, floats (even ``3.0``), strings and ``None`` raise a
``TypeError`` (which is also a ``ValueError``); values < 1 raise ``ValueError``.
The message names the op or class, the argument, the value and its type.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import normlib.functional as nf
import normlib.nn as nl
from normlib._checks import IntegerTypeError, check_positive_int
from normlib.cosine_norm import CosineConv2d, CosineLinear
from normbook.images import load_photos
from normbook.plotting import draw_cubes
from normlib.practice import FrozenBatchNorm
from normlib.rms import RMSNorm
from normlib.sets import StatSet, group_set

NUMPY_INTS = [np.int8(3), np.int32(3), np.int64(3), np.uint8(3), np.uint64(3)]


# --------------------------------------------------------------------------- the helper
@pytest.mark.parametrize("value", [1, 3, 10**12, *NUMPY_INTS], ids=repr)
def test_accepts_python_and_numpy_integers_and_returns_a_plain_int(value):
    out = check_positive_int(value, "n", "op")
    assert type(out) is int and out == int(value)


@pytest.mark.parametrize("value,shown", [
    (True, "True (bool)"),
    (False, "False (bool)"),
    (np.True_, "np.True_ (bool)"),
    (3.0, "3.0 (float)"),
    (np.float64(2.0), "np.float64(2.0) (float64)"),
    ("3", "'3' (str)"),
    (None, "None (NoneType)"),
    (torch.tensor(3), "tensor(3) (Tensor)"),
])
def test_rejects_non_integers_with_a_type_error(value, shown):
    with pytest.raises(TypeError, match=re.escape(f"GroupNorm: num_groups must be a positive integer, got {shown}")) as e:
        check_positive_int(value, "num_groups", "GroupNorm")
    assert isinstance(e.value, IntegerTypeError) and isinstance(e.value, ValueError)  # ValueError as before


@pytest.mark.parametrize("value,shown", [
    (0, "0 (int)"), (-1, "-1 (int)"), (np.int64(0), "0 (int64)"), (np.int16(-5), "-5 (int16)"),
])
def test_rejects_values_below_one_with_a_value_error(value, shown):
    with pytest.raises(ValueError) as e:
        check_positive_int(value, "num_groups", "GroupNorm")
    assert not isinstance(e.value, TypeError)
    assert str(e.value) == f"GroupNorm: num_groups must be a positive integer, got {shown}"


# --------------------------------------------------------------------------- NumPy integers accepted everywhere
@pytest.mark.parametrize("n", NUMPY_INTS, ids=repr)
def test_groupnorm_accepts_numpy_integers(n):
    m = nl.GroupNorm(n, np.int64(6))
    assert type(m.num_groups) is int and type(m.num_channels) is int
    ref = torch.nn.GroupNorm(3, 6)
    ref.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(m(x), ref(x))


@pytest.mark.parametrize("n", NUMPY_INTS, ids=repr)
def test_batchnorm2d_accepts_numpy_integers(n):
    m = nl.BatchNorm2d(n)
    assert type(m.num_features) is int and m.weight.shape == (3,)
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(m(x), torch.nn.BatchNorm2d(3)(x))


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("n", NUMPY_INTS[:3], ids=repr)
def test_group_norm_accepts_numpy_integers(n, backend):
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    x = x.numpy() if backend == "numpy" else x
    np.testing.assert_allclose(np.asarray(nf.group_norm(x, n)), np.asarray(nf.group_norm(x, 3)))


@pytest.mark.parametrize("make,attrs", [
    (lambda n: nl.BatchNorm1d(n), ["num_features"]),
    (lambda n: nl.InstanceNorm2d(n, affine=True), ["num_features"]),
    (lambda n: nl.LayerNorm(n), ["normalized_shape"]),
    (lambda n: nl.LayerNorm([n, n]), ["normalized_shape"]),
    (lambda n: RMSNorm((n,)), ["normalized_shape"]),
    (lambda n: FrozenBatchNorm(n), ["num_features"]),
    (lambda n: CosineLinear(n, n), ["in_features", "out_features"]),
    (lambda n: CosineConv2d(n, n, n), []),
    (lambda n: group_set(n), ["groups"]),
], ids=["BatchNorm1d", "InstanceNorm2d", "LayerNorm", "LayerNorm2", "RMSNorm", "FrozenBatchNorm",
        "CosineLinear", "CosineConv2d", "group_set"])
def test_other_constructors_accept_numpy_integers_and_store_ints(make, attrs):
    m = make(np.int64(3))
    for a in attrs:
        v = getattr(m, a)
        assert all(type(s) is int for s in (v if isinstance(v, tuple) else (v,)))


# --------------------------------------------------------------------------- rejected everywhere, named
REJECTING = [
    ("GroupNorm", "num_groups", lambda v: nl.GroupNorm(v, 4)),
    ("BatchNorm2d", "num_features", lambda v: nl.BatchNorm2d(v)),
    ("BatchNorm1d", "num_features", lambda v: nl.BatchNorm1d(v)),
    ("InstanceNorm3d", "num_features", lambda v: nl.InstanceNorm3d(v)),
    ("group_norm", "num_groups", lambda v: nf.group_norm(torch.randn(2, 4, 3), v)),
    ("LayerNorm", "normalized_shape[0]", lambda v: nl.LayerNorm(v)),
    ("LayerNorm", "normalized_shape[1]", lambda v: nl.LayerNorm([4, v])),
    ("RMSNorm", "normalized_shape[0]", lambda v: RMSNorm([v])),
    ("FrozenBatchNorm", "num_features", lambda v: FrozenBatchNorm(v)),
    ("CosineLinear", "in_features", lambda v: CosineLinear(v, 3)),
    ("CosineLinear", "out_features", lambda v: CosineLinear(3, v)),
    ("CosineConv2d", "in_channels", lambda v: CosineConv2d(v, 2, 3)),
    ("CosineConv2d", "out_channels", lambda v: CosineConv2d(2, v, 3)),
    ("CosineConv2d", "kernel_size", lambda v: CosineConv2d(2, 2, v)),
    ("load_photos", "height", lambda v: load_photos(v, 10)),
    ("load_photos", "width", lambda v: load_photos(10, v)),
    ("draw_cubes", "ncols", lambda v: draw_cubes(ncols=v)),
    ("GroupNorm", "groups", lambda v: group_set(v)),
    ("x", "groups", lambda v: StatSet("x", groups=v)),
]
BAD = [(True, "True (bool)", TypeError), (3.0, "3.0 (float)", TypeError), (2.5, "2.5 (float)", TypeError),
       (0, "0 (int)", ValueError), (-1, "-1 (int)", ValueError), (np.int64(0), "0 (int64)", ValueError)]


@pytest.mark.parametrize("value,shown,exc", BAD, ids=[b[1] for b in BAD])
@pytest.mark.parametrize("where,name,make", REJECTING, ids=[f"{w}.{n}" for w, n, _ in REJECTING])
def test_every_count_is_rejected_naming_where_what_and_the_value(where, name, make, value, shown, exc):
    with pytest.raises(exc, match=re.escape(f"{where}: {name} must be a positive integer, got {shown}")):
        make(value)
