"""``torch.autograd.gradcheck`` (float64) of every functional op and of the core.

The analytic backward of :func:`normlib.core.normalize` is checked against
finite differences with respect to the input and, where given, the weight and
the bias, for every set S (batch, instance, layer, group) and every op's
training and eval paths.
"""
from __future__ import annotations

import inspect
import zlib

import pytest
import torch
from torch.autograd import gradcheck

import normlib.functional as nf
from normlib.core import normalize
from normlib.sets import batch_set, group_set, instance_set, layer_set

D = torch.float64
AFFINE = ["none", "weight", "bias", "both"]


def _gen(*params) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(params).encode()))


def _x(gen, shape):
    """A float64 leaf with a random offset and scale, requiring grad."""
    x = torch.randn(shape, generator=gen, dtype=D) * 1.7 + 0.6
    return x.requires_grad_(True)


def _params(gen, shape, affine: str):
    """(weight, bias) leaves of ``shape``, or None where ``affine`` leaves them out."""
    w = (torch.randn(shape, generator=gen, dtype=D) * 0.5 + 1.0).requires_grad_(True)
    b = torch.randn(shape, generator=gen, dtype=D).requires_grad_(True)
    return (w if affine in ("weight", "both") else None, b if affine in ("bias", "both") else None)


def _check(fn, x, w, b) -> None:
    """gradcheck ``fn(x, w, b)`` over every tensor that requires grad; the others are closed over."""
    leaves = [t for t in (x, w, b) if t is not None]

    def f(*args):
        it = iter(args)
        xx = next(it)
        ww = next(it) if w is not None else None
        bb = next(it) if b is not None else None
        return fn(xx, ww, bb)

    assert gradcheck(f, tuple(leaves), eps=1e-6, atol=1e-7, rtol=1e-5)


SHAPES = {2: (5, 3), 3: (3, 2, 4), 4: (2, 3, 2, 3), 5: (2, 2, 2, 2, 2)}


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_gradcheck_batch_norm_training(ndim, affine):
    gen = _gen("bn-train", ndim, affine)
    x = _x(gen, SHAPES[ndim])
    C = x.shape[1]
    w, b = _params(gen, (C,), affine)
    rm, rv = torch.zeros(C, dtype=D), torch.ones(C, dtype=D)  # updated in place on every call; no gradient
    _check(lambda x, w, b: nf.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5), x, w, b)
    assert not torch.equal(rm, torch.zeros(C, dtype=D)), "the running mean was not updated"


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("ndim", [2, 4])
def test_gradcheck_batch_norm_training_without_running_stats(ndim, affine):
    gen = _gen("bn-train-nostats", ndim, affine)
    x = _x(gen, SHAPES[ndim])
    w, b = _params(gen, (x.shape[1],), affine)
    _check(lambda x, w, b: nf.batch_norm(x, None, None, w, b, training=True), x, w, b)


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_gradcheck_batch_norm_eval(ndim, affine):
    gen = _gen("bn-eval", ndim, affine)
    x = _x(gen, SHAPES[ndim])
    C = x.shape[1]
    w, b = _params(gen, (C,), affine)
    rm = torch.randn(C, generator=gen, dtype=D)
    rv = torch.rand(C, generator=gen, dtype=D) + 0.5
    _check(lambda x, w, b: nf.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5), x, w, b)


@pytest.mark.parametrize("running", [False, True], ids=["no-running", "running"])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("ndim", [3, 4, 5])
def test_gradcheck_instance_norm(ndim, affine, running):
    gen = _gen("in", ndim, affine, running)
    x = _x(gen, SHAPES[ndim])
    C = x.shape[1]
    w, b = _params(gen, (C,), affine)
    rm, rv = (torch.zeros(C, dtype=D), torch.ones(C, dtype=D)) if running else (None, None)
    _check(lambda x, w, b: nf.instance_norm(x, rm, rv, w, b, use_input_stats=True), x, w, b)


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("ndim", [3, 4])
def test_gradcheck_instance_norm_running_stats(ndim, affine):
    """use_input_stats=False: the running statistics normalize (an affine map of x)."""
    gen = _gen("in-eval", ndim, affine)
    x = _x(gen, SHAPES[ndim])
    C = x.shape[1]
    w, b = _params(gen, (C,), affine)
    rm, rv = torch.randn(C, generator=gen, dtype=D), torch.rand(C, generator=gen, dtype=D) + 0.5
    _check(lambda x, w, b: nf.instance_norm(x, rm, rv, w, b, use_input_stats=False), x, w, b)


LN_CASES = [((5, 4), (4,)), ((3, 2, 4), (4,)), ((3, 2, 4), (2, 4)), ((2, 3, 2, 2), (3, 2, 2)), ((2, 2, 2, 3), (2, 3))]


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape,ns", LN_CASES, ids=[f"{list(s)}-{list(n)}" for s, n in LN_CASES])
def test_gradcheck_layer_norm(shape, ns, affine):
    gen = _gen("ln", shape, ns, affine)
    x = _x(gen, shape)
    w, b = _params(gen, ns, affine)
    _check(lambda x, w, b: nf.layer_norm(x, ns, w, b, eps=1e-5), x, w, b)


GN_CASES = [((3, 4), 1), ((3, 4), 2), ((2, 4, 3), 2), ((2, 6, 2, 2), 3), ((2, 4, 2, 2), 4), ((2, 4, 2, 1, 2), 2)]


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape,G", GN_CASES, ids=[f"{list(s)}-G{g}" for s, g in GN_CASES])
def test_gradcheck_group_norm(shape, G, affine):
    gen = _gen("gn", shape, G, affine)
    x = _x(gen, shape)
    w, b = _params(gen, (shape[1],), affine)
    _check(lambda x, w, b: nf.group_norm(x, G, w, b, eps=1e-5), x, w, b)


SETS = {
    "batch": (batch_set(), (4, 3, 2, 2)),
    "batch-2d": (batch_set(), (5, 3)),
    "instance": (instance_set(), (2, 3, 2, 3)),
    "layer-1": (layer_set(1), (3, 2, 5)),
    "layer-3": (layer_set(3), (2, 3, 2, 2)),
    "group-1": (group_set(1), (2, 4, 3)),
    "group-2": (group_set(2), (2, 4, 2, 2)),
    "group-C": (group_set(3), (2, 3, 4)),
}


@pytest.mark.parametrize("name", list(SETS))
def test_gradcheck_core_normalize(name):
    S, shape = SETS[name]
    x = _x(_gen("core", name), shape)
    assert gradcheck(lambda x: normalize(x, S, 1e-5)[0], (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name", list(SETS))
def test_core_normalize_backward_matches_autograd_of_plain_formula(name):
    """The analytic backward equals autograd through the naive two-pass formula (float64)."""
    S, shape = SETS[name]
    gen = _gen("core-vs-autograd", name)
    x = _x(gen, shape)
    g = torch.randn(shape, generator=gen, dtype=D)
    (gx,) = torch.autograd.grad(normalize(x, S, 1e-5)[0], x, g)
    xv = x.reshape(S.view_shape(shape))
    axes = S.reduce_axes(shape)
    mean = xv.mean(dim=axes, keepdim=True)
    var = ((xv - mean) ** 2).mean(dim=axes, keepdim=True)
    ref = ((xv - mean) / torch.sqrt(var + 1e-5)).reshape(shape)
    (gref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(gx, gref, rtol=1e-10, atol=1e-10)


_HAS_AFFINE = "weight" in inspect.signature(normalize).parameters


@pytest.mark.skipif(not _HAS_AFFINE, reason="normalize takes no weight/bias")
@pytest.mark.parametrize("affine", ["weight", "bias", "both"])
@pytest.mark.parametrize("name", ["batch", "layer-1", "group-2"])
def test_gradcheck_core_normalize_with_affine(name, affine):
    """normalize's fused affine: gradients for weight and bias too."""
    S, shape = SETS[name]
    gen = _gen("core-affine", name, affine)
    x = _x(gen, shape)
    pshape = (shape[-1],) if name.startswith("layer") else (1, shape[1]) + (1,) * (len(shape) - 2)
    w, b = _params(gen, pshape, affine)
    _check(lambda x, w, b: normalize(x, S, 1e-5, w, b)[0], x, w, b)
