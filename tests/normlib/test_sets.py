"""Unit tests of :class:`normlib.sets.StatSet` (the description of S), and the doctests of normlib.

Expected values are written out by hand from the definitions (Batch Norm:
per channel over N and the positions; Instance Norm: per (n, c) over the
positions; Layer Norm: per sample over the last k axes; Group Norm: per
(n, group) over C/G channels and the positions).
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import normlib
from normlib.sets import StatSet, batch_set, group_set, instance_set, layer_set

SHAPE = (2, 6, 3, 4)  # N, C, H, W

# set, view_shape, reduce_axes, stat_shape, set_size for SHAPE
TABLE = [
    ("batch", batch_set(), (2, 6, 3, 4), (0, 2, 3), (6,), 24),
    ("instance", instance_set(), (2, 6, 3, 4), (2, 3), (2, 6), 12),
    ("layer-1", layer_set(1), (2, 6, 3, 4), (3,), (2, 6, 3), 4),
    ("layer-2", layer_set(2), (2, 6, 3, 4), (2, 3), (2, 6), 12),
    ("layer-3", layer_set(3), (2, 6, 3, 4), (1, 2, 3), (2,), 72),
    ("layer-4", layer_set(4), (2, 6, 3, 4), (0, 1, 2, 3), (), 144),
    ("group-1", group_set(1), (2, 1, 6, 3, 4), (2, 3, 4), (2, 1), 72),
    ("group-2", group_set(2), (2, 2, 3, 3, 4), (2, 3, 4), (2, 2), 36),
    ("group-3", group_set(3), (2, 3, 2, 3, 4), (2, 3, 4), (2, 3), 24),
    ("group-6", group_set(6), (2, 6, 1, 3, 4), (2, 3, 4), (2, 6), 12),
]
IDS = [row[0] for row in TABLE]


@pytest.mark.parametrize("name,S,view,axes,stat,size", TABLE, ids=IDS)
def test_view_shape(name, S, view, axes, stat, size):
    assert S.view_shape(SHAPE) == view


@pytest.mark.parametrize("name,S,view,axes,stat,size", TABLE, ids=IDS)
def test_reduce_axes(name, S, view, axes, stat, size):
    assert S.reduce_axes(SHAPE) == axes
    assert list(axes) == sorted(set(axes)), "sorted and without duplicates"


@pytest.mark.parametrize("name,S,view,axes,stat,size", TABLE, ids=IDS)
def test_stat_shape(name, S, view, axes, stat, size):
    assert S.stat_shape(SHAPE) == stat


@pytest.mark.parametrize("name,S,view,axes,stat,size", TABLE, ids=IDS)
def test_set_size(name, S, view, axes, stat, size):
    assert S.set_size(SHAPE) == size
    assert isinstance(S.set_size(SHAPE), int)
    # the sets partition the input
    assert size * int(np.prod(stat, dtype=np.int64)) == int(np.prod(SHAPE))


@pytest.mark.parametrize("name,S,view,axes,stat,size", TABLE, ids=IDS)
def test_labels_partition_the_input_into_sets_of_size_S(name, S, view, axes, stat, size):
    lab = S.labels(SHAPE)
    assert lab.shape == SHAPE and np.issubdtype(lab.dtype, np.integer)
    counts = np.bincount(lab.ravel())
    assert len(counts) == int(np.prod(stat, dtype=np.int64))
    assert (counts == size).all()


def test_labels_batch_norm_by_hand():
    lab = batch_set().labels(SHAPE)
    # label = channel index, whatever n, h, w
    expected = np.broadcast_to(np.arange(6)[None, :, None, None], SHAPE)
    np.testing.assert_array_equal(lab, expected)


def test_labels_instance_norm_by_hand():
    lab = instance_set().labels(SHAPE)
    expected = np.broadcast_to((np.arange(2)[:, None] * 6 + np.arange(6)[None, :])[:, :, None, None], SHAPE)
    np.testing.assert_array_equal(lab, expected)


def test_labels_layer_norm_by_hand():
    np.testing.assert_array_equal(layer_set(3).labels(SHAPE), np.broadcast_to(np.arange(2)[:, None, None, None], SHAPE))
    np.testing.assert_array_equal(layer_set(4).labels(SHAPE), np.zeros(SHAPE, dtype=int))
    lab = layer_set(1).labels(SHAPE)  # one set per row (n, c, h)
    np.testing.assert_array_equal(lab, np.broadcast_to(np.arange(36).reshape(2, 6, 3)[..., None], SHAPE))


def test_labels_group_norm_by_hand():
    lab = group_set(3).labels(SHAPE)  # channels {0,1}, {2,3}, {4,5} per sample
    group_of_channel = np.array([0, 0, 1, 1, 2, 2])
    expected = np.broadcast_to((np.arange(2)[:, None] * 3 + group_of_channel[None, :])[:, :, None, None], SHAPE)
    np.testing.assert_array_equal(lab, expected)


def test_group_norm_groups_are_contiguous_channels():
    lab = group_set(2).labels((1, 6, 1))
    assert lab.ravel().tolist() == [0, 0, 0, 1, 1, 1]


def test_mask_by_hand():
    m = batch_set().mask(SHAPE, (1, 4, 2, 3))
    assert m.dtype == bool and m.shape == SHAPE
    assert m[:, 4].all() and not m[:, [0, 1, 2, 3, 5]].any()
    m = group_set(2).mask(SHAPE, (0, 4, 0, 0))
    assert m[0, 3:].all() and not m[0, :3].any() and not m[1].any()
    m = instance_set().mask(SHAPE, (1, 2, 0, 0))
    assert int(m.sum()) == 12 and m[1, 2].all()


def test_layer_set_counts_from_the_end_for_any_rank():
    S = layer_set(2)
    assert S.reduce_axes((5, 7)) == (0, 1)
    assert S.reduce_axes((2, 3, 5, 7)) == (2, 3)
    assert S.set_size((2, 3, 5, 7)) == 35
    assert S.stat_shape((2, 3, 5, 7)) == (2, 3)


def test_sets_of_other_ranks():
    assert batch_set().reduce_axes((8, 3)) == (0,)
    assert batch_set().set_size((8, 3)) == 8
    assert batch_set().reduce_axes((2, 3, 4, 5, 6)) == (0, 2, 3, 4)
    assert instance_set().set_size((2, 3, 4, 5, 6)) == 120
    assert group_set(2).view_shape((5, 4)) == (5, 2, 2)
    assert group_set(2).reduce_axes((5, 4)) == (2,)
    assert group_set(2).set_size((2, 4, 2, 3, 5)) == 60


@pytest.mark.parametrize("S,ndim,text", [
    (batch_set(), 4, "N, H, W per C"),
    (batch_set(), 3, "N, L per C"),
    (batch_set(), 2, "N per C"),
    (batch_set(), 5, "N, D0, D1, D2 per C"),
    (instance_set(), 4, "H, W per N×C"),
    (instance_set(), 3, "L per N×C"),
    (instance_set(), 2, "one entry per N×C"),
    (layer_set(1), 4, "W per N×C×H"),
    (layer_set(3), 4, "C, H, W per N"),
    (layer_set(4), 4, "N, C, H, W"),
    (group_set(2), 4, "C/G, H, W per (sample, group)"),
    (group_set(2), 3, "C/G, L per (sample, group)"),
    (StatSet("odd", over_batch=True, groups=2), 4, "N, C/G, H, W per group"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_describe(S, ndim, text):
    assert S.describe(ndim) == text


def test_describe_names_exactly_the_reduced_axes():
    """describe() is computed from reduce_axes: each reduced axis name appears before 'per'."""
    names = ["N", "C", "H", "W"]
    for S in (batch_set(), instance_set(), layer_set(1), layer_set(2), layer_set(3)):
        over = S.describe(4).split(" per ")[0].split(", ")
        assert over == [names[i] for i in S.reduce_axes((2, 3, 4, 5))]


def test_statset_is_frozen_and_hashable():
    S = batch_set()
    with pytest.raises(Exception):
        S.over_batch = False  # type: ignore[misc]
    assert batch_set() == S and hash(batch_set()) == hash(S)
    assert group_set(2) != group_set(4)


@pytest.mark.parametrize("kw,match", [
    ({"groups": 0}, r"x: groups must be a positive integer, got 0"),
    ({"groups": -3}, r"x: groups must be a positive integer, got -3"),
    ({"groups": 2, "start_dim": 1}, r"x: channel groups need start_dim=2, got 1"),
])
def test_statset_rejects_bad_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        StatSet("x", **kw)


def test_layer_set_needs_at_least_one_axis():
    with pytest.raises(ValueError, match=r"LayerNorm: normalized_shape must have at least one dimension, got 0"):
        layer_set(0)


def test_layer_set_longer_than_input_is_rejected():
    with pytest.raises(ValueError, match=r"LayerNorm: start_dim=-3 is out of range for a 2-D input"):
        layer_set(3).reduce_axes((4, 5))


def test_group_set_with_indivisible_channels_is_rejected():
    with pytest.raises(ValueError, match=r"GroupNorm: Expected number of channels in input to be divisible by "
                                         r"num_groups, but got input of shape \[2, 6, 3\] and num_groups=4"):
        group_set(4).view_shape((2, 6, 3))
    with pytest.raises(ValueError, match=r"num_groups=4"):
        group_set(4).labels((2, 6, 3))


# --------------------------------------------------------------------------- doctests
def _normlib_modules() -> list[str]:
    return sorted(["normlib"] + [f"normlib.{m.name}" for m in pkgutil.iter_modules(normlib.__path__)])


@pytest.mark.parametrize("modname", _normlib_modules())
def test_doctests(modname):
    """Every docstring example in normlib runs and prints what it says (``pytest --doctest-modules``)."""
    module = importlib.import_module(modname)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, modname):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {modname}"


@pytest.mark.parametrize("modname", ["normlib.sets", "normlib.core"])
def test_foundation_modules_have_doctests(modname):
    """The foundation's equivalences are documented by example: the doctest test above is not vacuous."""
    module = importlib.import_module(modname)
    examples = sum(len(t.examples) for t in doctest.DocTestFinder().find(module, modname))
    assert examples >= 2
