"""Every bad input raises, with a message naming the op, the problem and the shapes or values,
before any arithmetic and before any state changes.

The autouse fixture ``no_arithmetic`` replaces the core and the eval-path
arithmetic of :mod:`normlib.functional` by functions that fail the test: a
check that comes after the arithmetic would surface as that failure instead
of the expected error.  Module tests also compare ``num_batches_tracked`` and
the running buffers before and after the failing call.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch

import normlib.functional as nf
import normlib.nn as nl


class ArithmeticReached(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_arithmetic(monkeypatch):
    """Any call into the statistics core or the eval arithmetic fails the test."""

    def boom(*args, **kwargs):
        raise ArithmeticReached("arithmetic ran before the input was rejected")

    monkeypatch.setattr(nf, "normalize", boom)
    monkeypatch.setattr(nf, "_apply_stats", boom)


def t(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_unchanged(module: torch.nn.Module, before: dict) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed by a call that raised"


def raises_unchanged(module, x, exc, match):
    """``module(x)`` raises ``exc`` matching ``match`` and leaves the module's state as it was."""
    before = snapshot(module)
    with pytest.raises(exc, match=match):
        module(x)
    assert_unchanged(module, before)


def shape_str(*shape) -> str:
    return re.escape(str(list(shape)))


# --------------------------------------------------------------------------- wrong rank
RANK_CASES = [
    (nl.BatchNorm1d, 4, "2D or 3D"),
    (nl.BatchNorm1d, 1, "2D or 3D"),
    (nl.BatchNorm2d, 3, "4D"),
    (nl.BatchNorm2d, 5, "4D"),
    (nl.BatchNorm3d, 4, "5D"),
    (nl.BatchNorm3d, 6, "5D"),
    (nl.InstanceNorm1d, 4, "2D or 3D"),
    (nl.InstanceNorm1d, 1, "2D or 3D"),
    (nl.InstanceNorm2d, 2, "3D or 4D"),
    (nl.InstanceNorm2d, 5, "3D or 4D"),
    (nl.InstanceNorm3d, 3, "4D or 5D"),
    (nl.InstanceNorm3d, 6, "4D or 5D"),
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,ndim,want", RANK_CASES, ids=[f"{c.__name__}-{n}D" for c, n, _ in RANK_CASES])
def test_module_rejects_wrong_rank(cls, ndim, want, train):
    m = cls(3, affine=True, track_running_stats=True).train(train)
    shape = (2, 3, 2, 2, 2, 2)[:ndim] if ndim > 1 else (3,)
    raises_unchanged(
        m, t(*shape), ValueError,
        rf"{cls.__name__}: expected {want} input \(got {ndim}D input of shape {shape_str(*shape)}\)",
    )


@pytest.mark.parametrize("op,fn,min_ndim", [
    ("batch_norm", lambda x: nf.batch_norm(x, None, None, training=True), 2),
    ("instance_norm", lambda x: nf.instance_norm(x), 3),
    ("group_norm", lambda x: nf.group_norm(x, 1), 2),
])
def test_functional_rejects_too_few_dimensions(op, fn, min_ndim):
    x = t(*(3, 4)[: min_ndim - 1])
    with pytest.raises(ValueError, match=rf"{op}: expected input with at least {min_ndim} dimensions .*"
                                         rf"got {min_ndim - 1}D input of shape {shape_str(*x.shape)}"):
        fn(x)


# --------------------------------------------------------------------------- channel count
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", [
    (nl.BatchNorm1d, (4, 5)), (nl.BatchNorm1d, (4, 5, 2)), (nl.BatchNorm2d, (2, 5, 3, 3)),
    (nl.BatchNorm3d, (2, 5, 2, 2, 2)),
])
def test_batchnorm_rejects_channel_mismatch(cls, shape, train):
    m = cls(3).train(train)
    raises_unchanged(m, t(*shape), ValueError,
                     rf"{cls.__name__}: expected input with 3 channels at dim 1, got input of shape {shape_str(*shape)}")


@pytest.mark.parametrize("affine,track", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("cls,shape,dim", [
    (nl.InstanceNorm1d, (2, 5, 4), 1), (nl.InstanceNorm1d, (5, 4), 0),
    (nl.InstanceNorm2d, (2, 5, 3, 3), 1), (nl.InstanceNorm2d, (5, 3, 3), 0),
    (nl.InstanceNorm3d, (2, 5, 2, 2, 2), 1),
])
def test_instancenorm_with_state_rejects_channel_mismatch(cls, shape, dim, affine, track):
    m = cls(3, affine=affine, track_running_stats=track)
    raises_unchanged(m, t(*shape), ValueError,
                     rf"{cls.__name__}: expected input with 3 channels at dim {dim}, got input of shape {shape_str(*shape)}")


def test_instancenorm_without_state_warns_on_channel_mismatch():
    """As in torch: with no affine and no running stats num_features is unused, so only a warning."""
    m = nl.InstanceNorm2d(3)
    with pytest.warns(UserWarning, match=r"InstanceNorm2d: input has 5 channels but num_features=3"):
        with pytest.raises(ArithmeticReached):  # after the warning the op runs
            m(t(2, 5, 3, 3))


@pytest.mark.parametrize("shape", [(2, 6), (2, 6, 3), (2, 6, 2, 2)])
def test_groupnorm_module_rejects_channel_mismatch(shape):
    m = nl.GroupNorm(2, 4)
    with pytest.raises(ValueError, match=rf"GroupNorm: expected input with 4 channels at dim 1, "
                                         rf"got input of shape {shape_str(*shape)}"):
        m(t(*shape))


# --------------------------------------------------------------------------- groups
@pytest.mark.parametrize("C,G", [(6, 4), (5, 2), (4, 3), (3, 6)])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_group_norm_rejects_groups_that_do_not_divide_channels(C, G, backend):
    x = t(2, C, 3)
    x = x.numpy() if backend == "numpy" else x
    with pytest.raises(ValueError, match=re.escape(
            f"group_norm: Expected number of channels in input to be divisible by num_groups, "
            f"but got input of shape [2, {C}, 3] and num_groups={G}")):
        nf.group_norm(x, G)


@pytest.mark.parametrize("G", [0, -2, 1.5, True, "2", None])
def test_group_norm_rejects_non_positive_integer_groups(G):
    with pytest.raises(ValueError, match=re.escape(f"group_norm: num_groups must be a positive integer, got {G!r}")):
        nf.group_norm(t(2, 4, 3), G)


def test_group_norm_accepts_numpy_integer_groups():
    with pytest.raises(ArithmeticReached):  # accepted: reaches the arithmetic
        nf.group_norm(t(2, 4, 3), np.int64(2))


@pytest.mark.parametrize("G,C", [(4, 6), (5, 3), (2, 7)])
def test_groupnorm_construction_rejects_groups_that_do_not_divide_channels(G, C):
    with pytest.raises(ValueError, match=re.escape(
            f"GroupNorm: num_channels must be divisible by num_groups, got num_channels={C} and num_groups={G}")):
        nl.GroupNorm(G, C)


@pytest.mark.parametrize("kw,name,value", [
    ({"num_groups": 0, "num_channels": 4}, "num_groups", 0),
    ({"num_groups": -1, "num_channels": 4}, "num_groups", -1),
    ({"num_groups": 2.0, "num_channels": 4}, "num_groups", 2.0),
    ({"num_groups": True, "num_channels": 4}, "num_groups", True),
])
def test_groupnorm_construction_rejects_bad_counts(kw, name, value):
    with pytest.raises(ValueError, match=re.escape(
            f"GroupNorm: {name} must be a positive integer, got {value!r} ({type(value).__name__})")):
        nl.GroupNorm(**kw)


# --------------------------------------------------------------------------- one value per channel
ONE_VALUE = [(1, 3), (1, 3, 1), (1, 3, 1, 1), (1, 3, 1, 1, 1)]


@pytest.mark.parametrize("shape", ONE_VALUE, ids=[str(list(s)) for s in ONE_VALUE])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_batch_norm_training_rejects_one_value_per_channel(shape, backend):
    x = t(*shape)
    rm, rv = torch.zeros(3), torch.ones(3)
    if backend == "numpy":
        x, rm, rv = x.numpy(), rm.numpy(), rv.numpy()
    with pytest.raises(ValueError, match=re.escape(
            f"batch_norm: Expected more than 1 value per channel when training, got input size {list(shape)}")):
        nf.batch_norm(x, rm, rv, training=True)
    assert (rm == 0).all() and (rv == 1).all()


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls,shape", [
    (nl.BatchNorm1d, (1, 3)), (nl.BatchNorm1d, (1, 3, 1)), (nl.BatchNorm2d, (1, 3, 1, 1)),
    (nl.BatchNorm3d, (1, 3, 1, 1, 1)),
])
def test_batchnorm_module_one_value_per_channel_raises_before_counting(cls, shape, momentum):
    """The failing call must not bump num_batches_tracked (momentum=None would then weight wrongly)."""
    m = cls(3, momentum=momentum)
    with torch.no_grad():
        m.running_mean.fill_(0.25)
        m.num_batches_tracked.fill_(7)
    raises_unchanged(m, t(*shape), ValueError,
                     re.escape(f"batch_norm: Expected more than 1 value per channel when training, got input size {list(shape)}"))
    assert int(m.num_batches_tracked) == 7


def test_batchnorm_module_one_value_per_channel_is_fine_in_eval():
    m = nl.BatchNorm2d(3).eval()
    with pytest.raises(ArithmeticReached):  # accepted: goes on to normalize with the running stats
        m(t(1, 3, 1, 1))


# --------------------------------------------------------------------------- instance norm: one position
@pytest.mark.parametrize("shape", [(2, 3, 1), (2, 3, 1, 1), (1, 3, 1, 1, 1)])
def test_instance_norm_rejects_single_spatial_element(shape):
    rm, rv = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match=re.escape(
            f"instance_norm: Expected more than 1 spatial element when training, got input size {list(shape)}")):
        nf.instance_norm(t(*shape), rm, rv)
    assert (rm == 0).all() and (rv == 1).all()


@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("cls,shape", [
    (nl.InstanceNorm1d, (2, 3, 1)), (nl.InstanceNorm1d, (3, 1)),
    (nl.InstanceNorm2d, (2, 3, 1, 1)), (nl.InstanceNorm2d, (3, 1, 1)),
    (nl.InstanceNorm3d, (2, 3, 1, 1, 1)), (nl.InstanceNorm3d, (3, 1, 1, 1)),
])
def test_instancenorm_module_single_spatial_element_in_training(cls, shape, track):
    """The message names the module and the shape the caller passed (unbatched stays unbatched)."""
    m = cls(3, affine=True, track_running_stats=track)
    raises_unchanged(m, t(*shape), ValueError, re.escape(
        f"{cls.__name__}: Expected more than 1 spatial element when training, got input size {list(shape)}"))


def test_instancenorm_module_single_spatial_element_is_fine_in_eval_with_running_stats():
    m = nl.InstanceNorm2d(3, track_running_stats=True).eval()
    with pytest.raises(ArithmeticReached):  # accepted: normalizes with the running statistics
        m(t(2, 3, 1, 1))
    m = nl.InstanceNorm2d(3, track_running_stats=False).eval()  # eval without running stats: input stats
    with pytest.raises(ValueError, match=r"InstanceNorm2d: Expected more than 1 spatial element"):
        m(t(2, 3, 1, 1))


# --------------------------------------------------------------------------- layer norm shapes
@pytest.mark.parametrize("shape,ns", [
    ((2, 3, 4), (3, 5)), ((2, 3, 4), (5,)), ((2, 3, 4), (2, 2, 3, 4)), ((4,), (2, 4)), ((2, 3, 4), (4, 3)),
])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_layer_norm_rejects_normalized_shape_that_does_not_match(shape, ns, backend):
    x = t(*shape)
    x = x.numpy() if backend == "numpy" else x
    star = ", ".join(map(str, ns))
    with pytest.raises(ValueError, match=re.escape(
            f"layer_norm: Given normalized_shape={list(ns)}, expected input with shape [*, {star}], "
            f"but got input of size {list(shape)}")):
        nf.layer_norm(x, ns)


def test_layernorm_module_rejects_input_with_other_trailing_dims():
    with pytest.raises(ValueError, match=re.escape("Given normalized_shape=[4, 5], expected input with shape [*, 4, 5], "
                                                   "but got input of size [2, 3, 4]")):
        nl.LayerNorm((4, 5))(t(2, 3, 4))


@pytest.mark.parametrize("ns,match", [
    ((), r"LayerNorm: normalized_shape must have at least one dimension, got \(\)"),
    ([], r"LayerNorm: normalized_shape must have at least one dimension, got \[\]"),
    ((3, 0), r"LayerNorm: normalized_shape\[1\] must be a positive integer, got 0 \(int\)"),
    ((-1,), r"LayerNorm: normalized_shape\[0\] must be a positive integer, got -1 \(int\)"),
    (0, r"LayerNorm: normalized_shape\[0\] must be a positive integer, got 0 \(int\)"),
])
def test_layernorm_construction_rejects_empty_or_non_positive_shape(ns, match):
    with pytest.raises(ValueError, match=match):
        nl.LayerNorm(ns)


def test_layer_norm_rejects_empty_normalized_shape():
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape must have at least one dimension, got \[\]"):
        nf.layer_norm(t(2, 3), [])


# --------------------------------------------------------------------------- weight / bias shapes
C3 = torch.ones(3)


PARAM_CASES = {
    "batch_norm": (lambda x, w, b: nf.batch_norm(x, None, None, w, b, training=True), (4, 3, 2), [3]),
    "instance_norm": (lambda x, w, b: nf.instance_norm(x, None, None, w, b), (4, 3, 2), [3]),
    "group_norm": (lambda x, w, b: nf.group_norm(x, 3, w, b), (4, 3, 2), [3]),
    "layer_norm": (lambda x, w, b: nf.layer_norm(x, (3, 2), w, b), (4, 3, 2), [3, 2]),
}


@pytest.mark.parametrize("bad", [(4,), (1, 3), (3, 1), (2,), ()], ids=str)
@pytest.mark.parametrize("which", ["weight", "bias"])
@pytest.mark.parametrize("op", list(PARAM_CASES))
def test_weight_and_bias_of_the_wrong_shape(op, which, bad):
    fn, shape, want = PARAM_CASES[op]
    if list(bad) == want:
        pytest.skip("not a wrong shape for this op")
    p = torch.ones(bad)
    w, b = (p, None) if which == "weight" else (None, p)
    with pytest.raises(ValueError, match=re.escape(
            f"{op}: expected {which} of shape {want}, got {which} of shape {list(bad)} for input of shape {list(shape)}")):
        fn(t(*shape), w, b)


@pytest.mark.parametrize("op", list(PARAM_CASES))
def test_weight_of_another_array_library(op):
    fn, shape, want = PARAM_CASES[op]
    with pytest.raises(TypeError, match=rf"{op}: weight is a ndarray but input is a Tensor"):
        fn(t(*shape), np.ones(want, dtype=np.float32), None)
    with pytest.raises(TypeError, match=rf"{op}: bias is a Tensor but input is a ndarray"):
        fn(t(*shape).numpy(), None, torch.ones(want))


def test_groupnorm_weight_is_per_channel_not_per_group():
    with pytest.raises(ValueError, match=re.escape("group_norm: expected weight of shape [6], got weight of shape [2]")):
        nf.group_norm(t(2, 6, 3), 2, torch.ones(2))


# --------------------------------------------------------------------------- running buffers
@pytest.mark.parametrize("bad", [(4,), (1, 3), ()], ids=str)
@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_rejects_running_buffers_of_the_wrong_shape(which, bad, training):
    rm, rv = torch.zeros(3), torch.ones(3)
    if which == "running_mean":
        rm = torch.zeros(bad)
    else:
        rv = torch.ones(bad)
    with pytest.raises(ValueError, match=re.escape(
            f"batch_norm: expected {which} of shape [3], got {which} of shape {list(bad)} for input of shape [4, 3, 2]")):
        nf.batch_norm(t(4, 3, 2), rm, rv, training=training)
    assert (rm == 0).all() and (rv == 1).all()


@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_rejects_running_buffers_of_the_wrong_shape(which, use_input_stats):
    bufs = {"running_mean": torch.zeros(3), "running_var": torch.ones(3)}
    bufs[which] = torch.zeros(5)
    with pytest.raises(ValueError, match=re.escape(f"instance_norm: expected {which} of shape [3], got {which} of shape [5]")):
        nf.instance_norm(t(2, 3, 4), bufs["running_mean"], bufs["running_var"], use_input_stats=use_input_stats)


@pytest.mark.parametrize("which", ["running_mean", "running_var"])
def test_batchnorm_module_with_corrupted_buffer_raises_before_counting(which):
    m = nl.BatchNorm1d(3)
    setattr(m, which, torch.zeros(4))  # e.g. a hand-edited checkpoint
    raises_unchanged(m, t(5, 3), ValueError, re.escape(f"batch_norm: expected {which} of shape [3], got {which} of shape [4]"))
    assert int(m.num_batches_tracked) == 0


def test_batch_norm_eval_needs_running_stats():
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var must be given when training=False"):
        nf.batch_norm(t(4, 3), None, torch.ones(3), training=False)
    with pytest.raises(ValueError, match=r"instance_norm: running_mean and running_var must be given when use_input_stats=False"):
        nf.instance_norm(t(4, 3, 2), torch.zeros(3), None, use_input_stats=False)


# --------------------------------------------------------------------------- eps
BAD_EPS = [0, 0.0, -1e-5, math.nan, math.inf, -math.inf, "1e-5", None, True]
FUNCS = {
    "batch_norm": lambda x, **kw: nf.batch_norm(x, None, None, training=True, **kw),
    "instance_norm": lambda x, **kw: nf.instance_norm(x, **kw),
    "layer_norm": lambda x, **kw: nf.layer_norm(x, (2,), **kw),
    "group_norm": lambda x, **kw: nf.group_norm(x, 1, **kw),
}
MODULES = {
    "BatchNorm2d": lambda **kw: nl.BatchNorm2d(3, **kw),
    "InstanceNorm1d": lambda **kw: nl.InstanceNorm1d(3, **kw),
    "LayerNorm": lambda **kw: nl.LayerNorm(4, **kw),
    "GroupNorm": lambda **kw: nl.GroupNorm(1, 3, **kw),
}


@pytest.mark.parametrize("eps", BAD_EPS, ids=repr)
@pytest.mark.parametrize("op", list(FUNCS))
def test_functional_rejects_bad_eps(op, eps):
    with pytest.raises(ValueError, match=re.escape(f"{op}: eps must be a finite number > 0, got eps={eps!r}")):
        FUNCS[op](t(4, 3, 2), eps=eps)


@pytest.mark.parametrize("eps", BAD_EPS, ids=repr)
@pytest.mark.parametrize("name", list(MODULES))
def test_module_construction_rejects_bad_eps(name, eps):
    with pytest.raises(ValueError, match=re.escape(f"{name}: eps must be a finite number > 0, got eps={eps!r}")):
        MODULES[name](eps=eps)


@pytest.mark.parametrize("eps", [1e-5, np.float32(1e-3), np.float64(1e-5), 1])
def test_eps_accepts_real_numbers(eps):
    with pytest.raises(ArithmeticReached):
        nf.layer_norm(t(3, 2), 2, eps=eps)


def test_eps_changed_after_construction_is_caught_before_counting():
    m = nl.BatchNorm1d(3)
    m.eps = 0.0
    raises_unchanged(m, t(4, 3), ValueError, r"batch_norm: eps must be a finite number > 0, got eps=0.0")


# --------------------------------------------------------------------------- momentum
BAD_MOMENTUM = [-0.1, 1.5, math.nan, math.inf, "0.1", True]


@pytest.mark.parametrize("momentum", BAD_MOMENTUM, ids=repr)
@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_functional_rejects_momentum_outside_unit_interval(op, momentum):
    with pytest.raises(ValueError, match=re.escape(f"{op}: momentum must be in [0, 1], got momentum={momentum!r}")):
        FUNCS[op](t(4, 3, 2), momentum=momentum)


@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_functional_rejects_momentum_none(op):
    """None means 'cumulative average', which only a module (with its batch count) can compute."""
    rm, rv = torch.zeros(3), torch.ones(3)
    fn = {"batch_norm": lambda: nf.batch_norm(t(4, 3, 2), rm, rv, training=True, momentum=None),
          "instance_norm": lambda: nf.instance_norm(t(4, 3, 2), rm, rv, momentum=None)}[op]
    with pytest.raises(ValueError, match=re.escape(f"{op}: momentum must be a number in [0, 1], got momentum=None")):
        fn()
    assert (rm == 0).all() and (rv == 1).all()


@pytest.mark.parametrize("momentum", BAD_MOMENTUM, ids=repr)
@pytest.mark.parametrize("cls", [nl.BatchNorm1d, nl.BatchNorm2d, nl.InstanceNorm2d])
def test_module_construction_rejects_momentum_outside_unit_interval(cls, momentum):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: momentum must be in [0, 1] or None, got momentum={momentum!r}")):
        cls(3, momentum=momentum)


@pytest.mark.parametrize("momentum", [0.0, 1.0, None, np.float32(0.5)], ids=repr)
def test_module_accepts_momentum_in_unit_interval_or_none(momentum):
    assert nl.BatchNorm2d(3, momentum=momentum).momentum == momentum


def test_momentum_changed_after_construction_is_caught_before_counting():
    m = nl.BatchNorm2d(3)
    m.momentum = 2.0
    raises_unchanged(m, t(2, 3, 2, 2), ValueError, re.escape("batch_norm: momentum must be in [0, 1], got momentum=2.0"))
    assert int(m.num_batches_tracked) == 0


# --------------------------------------------------------------------------- dtypes
INT_DTYPES = [
    ("numpy", np.int64), ("numpy", np.int32), ("numpy", np.bool_), ("numpy", np.uint8),
    ("torch", torch.int64), ("torch", torch.int32), ("torch", torch.bool), ("torch", torch.uint8),
]


def _int_input(backend, dtype, shape=(4, 3, 2)):
    if backend == "numpy":
        return np.ones(shape, dtype=dtype)
    return torch.ones(shape, dtype=dtype)


@pytest.mark.parametrize("backend,dtype", INT_DTYPES, ids=[f"{b}-{d}" for b, d in INT_DTYPES])
@pytest.mark.parametrize("op", list(FUNCS))
def test_functional_rejects_integer_and_boolean_input(op, backend, dtype):
    x = _int_input(backend, dtype)
    with pytest.raises(TypeError, match=re.escape(
            f"{op}: expected a floating-point input, got dtype {x.dtype} for input of shape [4, 3, 2]")):
        FUNCS[op](x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
@pytest.mark.parametrize("module,op", [
    (lambda: nl.BatchNorm1d(3), "BatchNorm1d"), (lambda: nl.InstanceNorm1d(3), "InstanceNorm1d"),
    (lambda: nl.LayerNorm(2), "layer_norm"), (lambda: nl.GroupNorm(1, 3), "group_norm"),
])
def test_module_rejects_integer_and_boolean_input(module, op, dtype):
    m = module()
    raises_unchanged(m, torch.ones(4, 3, 2, dtype=dtype), TypeError,
                     re.escape(f"{op}: expected a floating-point input, got dtype {dtype}"))


@pytest.mark.parametrize("x", [[[1.0, 2.0], [3.0, 4.0]], 3.0, "x"], ids=["list", "float", "str"])
@pytest.mark.parametrize("op", list(FUNCS))
def test_functional_rejects_non_arrays(op, x):
    with pytest.raises(TypeError, match=rf"{op}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}"):
        FUNCS[op](x)


def test_complex_input_is_rejected():
    with pytest.raises(TypeError, match=r"batch_norm: expected a floating-point input, got dtype torch.complex64"):
        nf.batch_norm(torch.ones(4, 3, dtype=torch.complex64), None, None, training=True)


# --------------------------------------------------------------------------- the checks really come first
def test_no_arithmetic_fixture_is_active():
    """Sanity check of the harness: a valid call does reach the (patched) arithmetic."""
    with pytest.raises(ArithmeticReached):
        nf.batch_norm(t(4, 3), None, None, training=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ArithmeticReached):
            nl.GroupNorm(1, 3)(t(4, 3, 2))
