"""Tests of normlib.fused: the fused CPU kernels and the core's choice between them and the whole-tensor path.

The fused kernels (``normlib/csrc/fused.c``) and the whole-tensor path of
:mod:`normlib.core` must give the same numbers up to rounding, for every set S
the kernels take; :func:`normlib.fused.layout` must refuse the calls they
cannot take; and the ``torch.func`` transforms, the environment switch and
autograd's in-place checks must work whichever path runs.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

import normlib.functional as NF
from normlib import fused
from normbook.timing import count_passes
from normlib.core import normalize
from normlib.sets import StatSet, batch_set, group_set, instance_set, layer_set

# The kernels are an optimization: on a machine where they cannot be built (no C
# compiler) these tests have nothing to test and are skipped, saying why. CI sets
# REQUIRE_FUSED=1, and there a missing build fails the suite instead of skipping it.
pytestmark = pytest.mark.skipif(
    not fused.available() and os.environ.get("REQUIRE_FUSED") != "1",
    reason=f"normlib's fused kernels are not built here ({fused.status})",
)

FWD = "normlib.fused_norm_forward.default"
BWD = "normlib.fused_norm_backward.default"
EPS = 1e-5
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])

# (id, set S, input shape, parameter shape broadcastable to the input, center, fused expected)
CASES = [
    # (N, C): one entry per block; the kernel takes it on a small input, the whole-tensor
    # path on a large one (layout's documented cut-off: blocks under 8 entries, over 4096 entries)
    ("BN-2d", batch_set(), (16, 3), (1, 3), True, True),
    ("BN-2d-large", batch_set(), (1100, 4), (1, 4), True, False),
    ("BN-4d-short-blocks", batch_set(), (3, 5, 2, 2), (1, 5, 1, 1), True, True),
    ("BN-3d", batch_set(), (4, 3, 10), (1, 3, 1), True, True),
    ("BN-4d", batch_set(), (3, 4, 3, 5), (1, 4, 1, 1), True, True),
    ("IN-3d", instance_set(), (2, 3, 7), (1, 3, 1), True, True),
    ("IN-4d", instance_set(), (2, 3, 4, 5), (1, 3, 1, 1), True, True),
    ("GN-G1", group_set(1), (2, 6, 3, 4), (1, 6, 1, 1), True, True),
    ("GN-G2", group_set(2), (2, 6, 3, 4), (1, 6, 1, 1), True, True),
    ("GN-G3", group_set(3), (2, 6, 9), (1, 6, 1), True, True),
    ("GN-GC", group_set(6), (2, 6, 3, 4), (1, 6, 1, 1), True, True),
    ("LN-1", layer_set(1), (3, 4, 10), (10,), True, True),
    ("LN-2", layer_set(2), (3, 4, 10), (4, 10), True, True),
    ("RMS-1", layer_set(1), (3, 4, 10), (10,), False, True),
    ("RMS-2", layer_set(2), (3, 4, 10), (4, 10), False, True),
    # Batch Norm's S on an inner axis: R > 1 blocks per batch entry
    ("BN-inner", StatSet("custom", over_batch=True, start_dim=3), (3, 2, 4, 9), (1, 1, 4, 1), True, True),
    # parameters varying inside S (L = 1): per position over a batch (B > 1), per entry of each (n, c)
    ("BN-param-per-position", batch_set(), (3, 2, 9), (1, 1, 9), True, True),
    ("IN-param-per-entry", instance_set(), (2, 3, 4, 5), (1, 3, 4, 5), True, True),
]
CASE_IDS = [c[0] for c in CASES]
AFFINE = pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _data(shape, pshape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(shape, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    w = (1 + 0.5 * torch.randn(pshape, generator=g, dtype=torch.float64)).to(dtype)
    b = torch.randn(pshape, generator=g, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, w, b, dy


def _params(w, b, affine):
    return (w if affine in ("weight", "both") else None), (b if affine in ("bias", "both") else None)


def _normalize_with_grads(S, x, w, b, dy, center):
    """``normalize`` forward and ``autograd.grad`` backward: ``{y, mean, var, dx, dw, db}`` and the op log."""
    leaves = {"dx": x.clone().requires_grad_()}
    if w is not None:
        leaves["dw"] = w.clone().requires_grad_()
    if b is not None:
        leaves["db"] = b.clone().requires_grad_()
    out: dict = {}

    def run():
        y, m = normalize(leaves["dx"], S, EPS, leaves.get("dw"), leaves.get("db"), center=center)
        grads = torch.autograd.grad(y, list(leaves.values()), dy)
        out.update(y=y.detach(), mean=m.mean, var=m.var, **dict(zip(leaves, grads)))

    log: list = []
    count_passes(run, x.numel(), log)
    return out, [name for name, _, _ in log]


def _assert_same(a: dict, b: dict, dtype, rtol=None, atol=None):
    assert a.keys() == b.keys()
    tol = dict(TOL[dtype])
    if rtol is not None:
        tol.update(rtol=rtol, atol=atol)
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


@contextlib.contextmanager
def _threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------------------
# 1. The kernels are built on this machine
# ---------------------------------------------------------------------------
def test_kernels_are_available_and_status_is_on():
    assert fused.available() is True
    assert fused.status == "on"


# ---------------------------------------------------------------------------
# 2. Fused and whole-tensor paths agree (outputs, statistics, gradients)
# ---------------------------------------------------------------------------
@DTYPES
@AFFINE
@pytest.mark.parametrize("name,S,shape,pshape,center,expect_fused", CASES, ids=CASE_IDS)
def test_fused_and_whole_tensor_paths_agree(name, S, shape, pshape, center, expect_fused, affine, dtype):
    x, w, b, dy = _data(shape, pshape, dtype)
    w, b = _params(w, b, affine)
    got, log = _normalize_with_grads(S, x, w, b, dy, center)
    with fused.disabled():
        ref, log_off = _normalize_with_grads(S, x, w, b, dy, center)
    assert (FWD in log, BWD in log) == (expect_fused, expect_fused), log
    assert FWD not in log_off and BWD not in log_off, log_off
    _assert_same(got, ref, dtype)
    if not center:  # RMSNorm: the returned mean is zeros on both paths
        assert torch.count_nonzero(got["mean"]) == 0


@DTYPES
@pytest.mark.parametrize("name,S,shape,pshape,center,expect_fused", CASES, ids=CASE_IDS)
def test_no_grad_forward_uses_the_kernel_and_matches_the_autograd_forward(name, S, shape, pshape, center,
                                                                          expect_fused, dtype):
    x, w, b, dy = _data(shape, pshape, dtype)
    log: list = []
    res: list = []
    count_passes(lambda: res.append(normalize(x, S, EPS, w, b, center=center)), x.numel(), log)
    (y, m), = res
    assert ([n for n, _, _ in log] == [FWD]) == expect_fused, log
    got, _ = _normalize_with_grads(S, x, w, b, dy, center)
    torch.testing.assert_close(y, got["y"], rtol=0, atol=0)
    torch.testing.assert_close(m.mean, got["mean"], rtol=0, atol=0)
    torch.testing.assert_close(m.var, got["var"], rtol=0, atol=0)


FUNCTIONAL = {
    "batch_norm": (lambda x, w, b: NF.batch_norm(x, None, None, w, b, True),
                   lambda x, w, b: F.batch_norm(x, None, None, w, b, True), (4, 3, 10), (3,)),
    "instance_norm": (lambda x, w, b: NF.instance_norm(x, weight=w, bias=b),
                      lambda x, w, b: F.instance_norm(x, weight=w, bias=b), (2, 3, 4, 5), (3,)),
    "group_norm": (lambda x, w, b: NF.group_norm(x, 2, w, b),
                   lambda x, w, b: F.group_norm(x, 2, w, b), (2, 6, 3, 4), (6,)),
    "layer_norm": (lambda x, w, b: NF.layer_norm(x, (4, 10), w, b),
                   lambda x, w, b: F.layer_norm(x, (4, 10), w, b), (3, 4, 10), (4, 10)),
    "rms_norm": (lambda x, w, b: NF.rms_norm(x, (10,), w, 1e-6),
                 lambda x, w, b: F.rms_norm(x, (10,), w, 1e-6), (3, 4, 10), (10,)),
}


@pytest.mark.parametrize("op", list(FUNCTIONAL))
def test_non_contiguous_upstream_gradient_gives_the_same_gradients_on_both_paths(op):
    ours, _, shape, pshape = FUNCTIONAL[op]
    x, w, b, _ = _data(shape, pshape, torch.float32)
    dy = torch.randn(tuple(reversed(shape))).permute(*reversed(range(len(shape))))  # transposed memory
    assert not dy.is_contiguous()
    res = []
    for ctx in (contextlib.nullcontext(), fused.disabled()):
        with ctx:
            leaves = [t.clone().requires_grad_() for t in (x, w, b)]
            y = ours(*leaves)
            res.append([g for g in torch.autograd.grad(y, leaves, dy, allow_unused=True) if g is not None])
    for a, c in zip(*res):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


@DTYPES
@pytest.mark.parametrize("op", list(FUNCTIONAL))
def test_functional_ops_with_the_kernel_match_torch(op, dtype):
    ours, theirs, shape, pshape = FUNCTIONAL[op]
    x, w, b, dy = _data(shape, pshape, dtype)
    outs = []
    for f in (ours, theirs):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        log: list = []
        res: list = []
        count_passes(lambda: res.append(f(*leaves)), x.numel(), log)
        y, = res
        outs.append({"y": y.detach(), **dict(zip(("dx", "dw", "db"),
                                                  torch.autograd.grad(y, leaves, dy, allow_unused=True)))})
        if f is ours:
            assert FWD in [n for n, _, _ in log], log
    if op == "rms_norm":  # no bias
        for o in outs:
            o.pop("db")
    _assert_same(outs[0], outs[1], dtype, **({"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}))


@pytest.mark.parametrize("op", ["batch_norm", "group_norm", "layer_norm", "rms_norm"])
def test_kernels_read_and_write_each_activation_once(op):
    # the module docstring: the forward reads x once and writes y once, the backward reads dy and x and writes dx
    ours, _, shape, pshape = FUNCTIONAL[op]
    x, w, b, dy = _data(shape, pshape, torch.float32)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    res: list = []
    fwd_log: list = []
    assert count_passes(lambda: res.append(ours(*leaves)), x.numel(), fwd_log) == {"ops": 1, "reads": 1, "writes": 1}
    assert fwd_log == [(FWD, 1, 1)]
    bwd_log: list = []
    assert count_passes(lambda: res[0].backward(dy), x.numel(), bwd_log) == {"ops": 1, "reads": 2, "writes": 1}
    assert bwd_log == [(BWD, 2, 1)]


def test_input_with_a_storage_offset_goes_through_the_kernel_unchanged():
    base = _t(50)
    x = base[10:].view(4, 10)  # contiguous, starting 10 entries into its storage
    before = base.clone()
    log: list = []
    res: list = []
    count_passes(lambda: res.append(NF.layer_norm(x, (10,))), x.numel(), log)
    assert [n for n, _, _ in log] == [FWD]
    assert torch.equal(base, before)  # the input is not written
    assert torch.equal(res[0], NF.layer_norm(x.clone(), (10,)))
    torch.testing.assert_close(res[0], F.layer_norm(x, (10,)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# 3. Threads: deterministic for a thread count, close across thread counts
# ---------------------------------------------------------------------------
THREAD_CASES = [c for c in CASES if c[0] in ("BN-4d", "GN-G2", "LN-2", "RMS-1", "IN-4d")]


@DTYPES
@pytest.mark.parametrize("name,S,shape,pshape,center,expect_fused", THREAD_CASES, ids=[c[0] for c in THREAD_CASES])
def test_results_are_bitwise_deterministic_per_thread_count_and_close_across_counts(name, S, shape, pshape, center,
                                                                                    expect_fused, dtype):
    # larger than CASES so that each of two threads gets several sets and the partial sums really split
    shape = (shape[0] * 4,) + tuple(shape[1:])
    x, w, b, dy = _data(shape, pshape, dtype, seed=1)
    per_count = {}
    for n in (1, 2):
        with _threads(n):
            first, log = _normalize_with_grads(S, x, w, b, dy, center)
            again, _ = _normalize_with_grads(S, x, w, b, dy, center)
            assert torch.get_num_threads() == n
        assert FWD in log and BWD in log
        for k in first:
            assert torch.equal(first[k], again[k]), f"{name} {n} threads: {k} differs between two calls"
        per_count[n] = first
    _assert_same(per_count[1], per_count[2], dtype)


def test_thread_count_is_restored_after_the_thread_tests():
    assert torch.get_num_threads() == 1  # conftest's setting


# ---------------------------------------------------------------------------
# 4. layout: which calls the kernels take, and how they read them
# ---------------------------------------------------------------------------
def _t(*shape, dtype=torch.float32):
    return torch.randn(shape, dtype=dtype)


@pytest.mark.parametrize("name,x,axes,w,b,expected", [
    # the module docstring's table, with per-channel / per-element parameters
    ("BN", _t(2, 3, 4, 5), (0, 2, 3), _t(1, 3, 1, 1), _t(1, 3, 1, 1), fused.Layout(R=1, B=2, G=3, K=1, L=20)),
    ("BN-3d", _t(4, 3, 10), (0, 2), _t(1, 3, 1), None, fused.Layout(R=1, B=4, G=3, K=1, L=10)),
    ("LN-1", _t(3, 4, 10), (2,), _t(1, 1, 10), _t(1, 1, 10), fused.Layout(R=12, B=1, G=1, K=10, L=1)),
    ("LN-2", _t(3, 4, 10), (1, 2), _t(1, 4, 10), _t(1, 4, 10), fused.Layout(R=3, B=1, G=1, K=40, L=1)),
    ("GN", _t(2, 2, 3, 4, 5), (2, 3, 4), _t(1, 2, 3, 1, 1), _t(1, 2, 3, 1, 1), fused.Layout(R=2, B=1, G=2, K=3, L=20)),
    ("GN-G1", _t(2, 1, 6, 4), (2, 3), _t(1, 1, 6, 1), None, fused.Layout(R=2, B=1, G=1, K=6, L=4)),
    ("GN-GC", _t(2, 6, 1, 4), (2, 3), _t(1, 6, 1, 1), None, fused.Layout(R=2, B=1, G=6, K=1, L=4)),
    ("IN", _t(2, 3, 4, 5), (2, 3), _t(1, 3, 1, 1), _t(1, 3, 1, 1), fused.Layout(R=2, B=1, G=3, K=1, L=20)),
    ("IN-bias-only", _t(2, 3, 4, 5), (2, 3), None, _t(1, 3, 1, 1), fused.Layout(R=2, B=1, G=3, K=1, L=20)),
    # no parameters: one set per row, G = K = 1
    ("IN-plain", _t(2, 3, 4, 5), (2, 3), None, None, fused.Layout(R=6, B=1, G=1, K=1, L=20)),
    # a parameter varying along a leading block inside S: K = that block, L = the rest
    ("IN-w-on-H", _t(2, 3, 4, 5), (2, 3), _t(1, 1, 4, 1), None, fused.Layout(R=6, B=1, G=1, K=4, L=5)),
    ("float64", _t(2, 3, 4, 5, dtype=torch.float64), (2, 3), None, None, fused.Layout(R=6, B=1, G=1, K=1, L=20)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_layout_of_the_documented_shapes(name, x, axes, w, b, expected):
    assert fused.layout(x, axes, w, b) == expected


@pytest.mark.parametrize("name,x,axes,w,b", [
    ("non-contiguous", _t(2, 3, 10).transpose(1, 2), (2,), None, None),
    ("non-contiguous-slice", _t(3, 20)[:, ::2], (1,), None, None),
    ("float16", _t(3, 10).half(), (1,), None, None),
    ("bfloat16", _t(3, 10).bfloat16(), (1,), None, None),
    ("int", torch.ones(3, 10, dtype=torch.int64), (1,), None, None),
    ("no-axes", _t(3, 10), (), None, None),
    ("empty", _t(0, 10), (1,), None, None),
    ("S-not-trailing", _t(3, 4, 10), (1,), None, None),
    ("S-with-a-gap", _t(2, 3, 4, 5), (1, 3), None, None),
    ("batch-and-not-trailing", _t(4, 3, 10), (0, 1), None, None),
    ("batch-blocks-short-on-a-large-input", _t(1100, 4), (0,), _t(1, 4), None),
    ("weight-on-trailing-axis-of-S", _t(3, 4, 10), (1, 2), _t(1, 1, 10), None),
    ("weight-with-gap-in-G", _t(2, 3, 4, 5), (3,), _t(1, 3, 1, 1), None),
    ("weight-on-batch-axis-for-BN", _t(4, 3, 10), (0, 2), _t(4, 3, 1), None),
    ("weight-and-bias-tabulated-differently", _t(2, 3, 4, 5), (2, 3), _t(1, 3, 1, 1), _t(1, 1, 1, 1)),
    ("bias-per-channel-weight-scalar", _t(2, 3, 4, 5), (2, 3), _t(1, 1, 1, 1), _t(1, 3, 1, 1)),
    ("weight-other-dtype", _t(2, 3, 4, 5), (2, 3), _t(1, 3, 1, 1, dtype=torch.float64), None),
    ("weight-not-a-tensor", _t(2, 3, 4, 5), (2, 3), 2.0, None),
], ids=lambda v: v if isinstance(v, str) else "")
def test_layout_refuses_what_the_kernels_cannot_take(name, x, axes, w, b):
    assert fused.layout(x, axes, w, b) is None


def test_layout_accepts_a_parameter_with_fewer_dimensions_as_documented():
    x = _t(3, 10)
    assert fused.layout(x, (1,), _t(10)) == fused.layout(x, (1,), _t(1, 10)) == fused.Layout(3, 1, 1, 10, 1)


def test_layout_is_none_inside_disabled_and_back_after():
    x = _t(3, 10)
    assert fused.layout(x, (1,)) == fused.Layout(R=3, B=1, G=1, K=1, L=10)
    with fused.disabled():
        assert fused.layout(x, (1,)) is None
        with fused.disabled():  # nested
            assert fused.layout(x, (1,)) is None
        assert fused.layout(x, (1,)) is None
    assert fused.layout(x, (1,)) is not None


def test_disabled_restores_the_kernels_after_an_exception():
    with pytest.raises(KeyError), fused.disabled():
        raise KeyError
    assert fused.layout(_t(3, 10), (1,)) is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_layout_is_none_for_a_cuda_tensor():  # pragma: no cover - CPU-only machine
    assert fused.layout(_t(3, 10).cuda(), (1,)) is None


def test_non_contiguous_input_runs_the_whole_tensor_path_with_the_same_numbers():
    x = _t(4, 10, 3).transpose(1, 2)  # (4, 3, 10), not contiguous
    log: list = []
    res: list = []
    count_passes(lambda: res.append(NF.layer_norm(x, (10,))), x.numel(), log)
    assert FWD not in [n for n, _, _ in log]
    torch.testing.assert_close(res[0], F.layer_norm(x, (10,)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res[0], NF.layer_norm(x.contiguous(), (10,)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# 5. Edge cases through the public ops, kernel on, against torch
# ---------------------------------------------------------------------------
EDGE = [
    # a set of one entry: the output is the bias (zero without one), as torch gives
    ("LN-size-1", lambda x, w, b: NF.layer_norm(x, (1,), w, b),
     lambda x, w, b: F.layer_norm(x, (1,), w, b), (5, 1), (1,)),
    ("GN-2d-G=C", lambda x, w, b: NF.group_norm(x, 4, w, b),
     lambda x, w, b: F.group_norm(x, 4, w, b), (3, 4), (4,)),
    ("GN-2d-G=1", lambda x, w, b: NF.group_norm(x, 1, w, b),
     lambda x, w, b: F.group_norm(x, 1, w, b), (3, 4), (4,)),
    ("GN-one-position", lambda x, w, b: NF.group_norm(x, 2, w, b),
     lambda x, w, b: F.group_norm(x, 2, w, b), (3, 4, 1), (4,)),
    ("IN-two-positions", lambda x, w, b: NF.instance_norm(x, weight=w, bias=b),
     lambda x, w, b: F.instance_norm(x, weight=w, bias=b), (2, 3, 2), (3,)),
    ("BN-one-sample", lambda x, w, b: NF.batch_norm(x, None, None, w, b, True),
     lambda x, w, b: F.batch_norm(x, None, None, w, b, True), (1, 3, 8), (3,)),
    ("BN-shortest-fused-block", lambda x, w, b: NF.batch_norm(x, None, None, w, b, True),
     lambda x, w, b: F.batch_norm(x, None, None, w, b, True), (2, 3, 2, 4), (3,)),
    ("LN-one-row", lambda x, w, b: NF.layer_norm(x, (7,), w, b),
     lambda x, w, b: F.layer_norm(x, (7,), w, b), (1, 7), (7,)),
    ("RMS-size-1", lambda x, w, b: NF.rms_norm(x, (1,), w, 1e-6),
     lambda x, w, b: F.rms_norm(x, (1,), w, 1e-6), (5, 1), (1,)),
]


def _y_and_grads(f, x, w, b, dy):
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = f(*leaves)
    grads = torch.autograd.grad(y, leaves, dy, allow_unused=True)
    return {"y": y.detach(), **{k: g for k, g in zip(("dx", "dw", "db"), grads) if g is not None}}


@DTYPES
@pytest.mark.parametrize("name,ours,theirs,shape,pshape", EDGE, ids=[e[0] for e in EDGE])
def test_edge_shapes_match_torch(name, ours, theirs, shape, pshape, dtype):
    x, w, b, dy = _data(shape, pshape, dtype, seed=2)
    got = _y_and_grads(ours, x, w, b, dy)
    torch_out = _y_and_grads(theirs, x, w, b, dy)
    ref = _y_and_grads(theirs, *(t.double() for t in (x, w, b, dy)))  # torch in float64, from the same numbers
    assert got.keys() == ref.keys()
    # tiny sets have tiny variances: r = 1/sqrt(σ² + ε) (up to 1/sqrt(ε) ≈ 316 for one entry, where the exact
    # gradient is 0 and torch's float32 kernel leaves noise) multiplies the rounding of the gradient.
    # So: as close to the float64 reference as torch's own kernel, or within the usual tolerance.
    tol = TOL[dtype]["atol"]
    for k in got:
        err = ((got[k].double() - ref[k]).abs() / (1 + ref[k].abs())).max().item()
        torch_err = ((torch_out[k].double() - ref[k]).abs() / (1 + ref[k].abs())).max().item()
        assert err <= max(2 * torch_err, tol), f"{k}: error {err:.3g}, torch's {torch_err:.3g}"


ONE_ENTRY_SETS = ["LN-size-1", "GN-2d-G=C"]


@pytest.mark.parametrize("name", ONE_ENTRY_SETS)
def test_sets_of_one_entry_give_the_bias(name):
    ours, theirs, shape, pshape = dict((e[0], e[1:]) for e in EDGE)[name]
    x, w, b, _ = _data(shape, pshape, torch.float32, seed=2)
    log: list = []
    res: list = []
    count_passes(lambda: res.append(ours(x, w, b)), x.numel(), log)
    assert [n for n, _, _ in log] == [FWD]
    assert torch.equal(res[0], b.expand(shape))
    assert torch.count_nonzero(ours(x, None, None)) == 0
    assert torch.equal(ours(x, None, None), theirs(x, None, None))


@pytest.mark.parametrize("op", ["layer_norm", "group_norm", "batch_norm", "instance_norm"])
def test_large_offset_in_float32_stays_within_a_few_ulp(op):
    g = torch.Generator().manual_seed(3)
    x = 1e4 + torch.randn(4, 6, 16, generator=g)  # float32: ulp(1e4) = 2**-10
    f = {
        "layer_norm": lambda t: NF.layer_norm(t, (16,)),
        "group_norm": lambda t: NF.group_norm(t, 3),
        "batch_norm": lambda t: NF.batch_norm(t, None, None, training=True),
        "instance_norm": lambda t: NF.instance_norm(t),
    }[op]
    log: list = []
    res: list = []
    count_passes(lambda: res.append(f(x)), x.numel(), log)
    assert [n for n, _, _ in log] == [FWD]
    ulp = torch.finfo(torch.float32).eps * 2 ** 13  # spacing of float32 at 1e4 (2**13 ≤ 1e4 < 2**14)
    xd = x.double().requires_grad_()  # the same float32 numbers, computed in float64
    ref = f(xd)
    assert (res[0].double() - ref.detach()).abs().max() <= 4 * ulp
    # the gradient too (|dy| ≲ 4): the kernel's mean is float32, off by at most ulp/2
    dy = torch.randn(x.shape, generator=g)
    xf = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad(f(xf), xf, dy)
    (dx_ref,) = torch.autograd.grad(ref, xd, dy.double())
    assert (dx.double() - dx_ref).abs().max() <= 4 * ulp


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("op", list(FUNCTIONAL))
def test_half_precision_is_computed_in_float32_and_cast(op, dtype):
    ours, theirs, shape, pshape = FUNCTIONAL[op]
    x, w, b, dy = _data(shape, pshape, dtype, seed=4)
    log: list = []
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    res: list = []
    count_passes(lambda: res.append(ours(*leaves)), x.numel(), log)
    y, = res
    assert y.dtype == dtype
    assert FWD in [n for n, _, _ in log], log  # float32 after the cast: the kernel applies
    grads = torch.autograd.grad(y, leaves, dy, allow_unused=True)
    t_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y_t = theirs(*t_leaves)
    t_grads = torch.autograd.grad(y_t, t_leaves, dy, allow_unused=True)
    torch.testing.assert_close(y.float(), y_t.float(), rtol=1e-2, atol=1e-2)
    for name, a, c in zip(("dx", "dw", "db"), grads, t_grads):
        if a is None and c is None:
            continue
        assert a.dtype == dtype, name
        # dw/db sum many half-precision products: relative to their size
        scale = max(1.0, c.float().abs().max().item())
        torch.testing.assert_close(a.float(), c.float(), rtol=1e-2, atol=2e-2 * scale, msg=lambda m, n=name: f"{n}: {m}")


# ---------------------------------------------------------------------------
# 6. torch.func: grad, vmap and vmap(grad) through the normlib ops
# ---------------------------------------------------------------------------
FUNC_OPS = {
    "layer_norm": (lambda x, w, b: NF.layer_norm(x, (10,), w, b), (5, 10), (10,)),
    "group_norm": (lambda x, w, b: NF.group_norm(x, 2, w, b), (2, 4, 9), (4,)),
    "batch_norm": (lambda x, w, b: NF.batch_norm(x, None, None, w, b, True), (3, 4, 8), (4,)),
}
E = 3  # the vmapped dimension


def _func_data(op, dtype=torch.float64):
    f, shape, pshape = FUNC_OPS[op]
    x, w, b, _ = _data((E, *shape), pshape, dtype, seed=5)
    dy = _data((E, *shape), pshape, dtype, seed=6)[0]
    return f, x, w, b, dy


@pytest.mark.parametrize("op", list(FUNC_OPS))
def test_func_grad_matches_autograd(op):
    f, X, w, b, DY = _func_data(op)
    x, dy = X[0], DY[0]
    loss = lambda x, w, b: (f(x, w, b) * dy).sum()  # noqa: E731
    with _no_warnings():
        got = torch.func.grad(loss, argnums=(0, 1, 2))(x, w, b)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = torch.autograd.grad(loss(*leaves), leaves)
    for a, c in zip(got, ref):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", list(FUNC_OPS))
def test_func_vmap_matches_a_python_loop(op):
    f, X, w, b, _ = _func_data(op)
    with _no_warnings():
        got = torch.func.vmap(f, in_dims=(0, None, None))(X, w, b)
    ref = torch.stack([f(X[i], w, b) for i in range(E)])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", list(FUNC_OPS))
def test_func_vmap_of_grad_gives_per_sample_gradients_as_a_loop(op):
    f, X, w, b, DY = _func_data(op)
    loss = lambda x, w, b, dy: (f(x, w, b) * dy).sum()  # noqa: E731
    with _no_warnings():
        got = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1, 2)), in_dims=(0, None, None, 0))(X, w, b, DY)
    for i in range(E):
        leaves = [t.clone().requires_grad_() for t in (X[i], w, b)]
        ref = torch.autograd.grad(loss(*leaves, DY[i]), leaves)
        for k, (a, c) in enumerate(zip(got, ref)):
            torch.testing.assert_close(a[i], c, rtol=1e-12, atol=1e-12, msg=lambda m, k=k: f"arg {k}, sample {i}: {m}")


@pytest.mark.parametrize("op", list(FUNC_OPS))
def test_func_grad_matches_torch_func_on_torch_kernels(op):
    f, X, w, b, DY = _func_data(op)
    torch_f = {
        "layer_norm": lambda x, w, b: F.layer_norm(x, (10,), w, b),
        "group_norm": lambda x, w, b: F.group_norm(x, 2, w, b),
        "batch_norm": lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
    }[op]
    with _no_warnings():
        got = torch.func.vmap(torch.func.grad(lambda x, w, b, dy: (f(x, w, b) * dy).sum(), argnums=(0, 1, 2)),
                              in_dims=(0, None, None, 0))(X, w, b, DY)
    ref = torch.func.vmap(torch.func.grad(lambda x, w, b, dy: (torch_f(x, w, b) * dy).sum(), argnums=(0, 1, 2)),
                          in_dims=(0, None, None, 0))(X, w, b, DY)
    for a, c in zip(got, ref):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


def test_func_grad_in_float32_through_the_kernel_path_matches_autograd():
    f, X, w, b, DY = _func_data("layer_norm", torch.float32)
    loss = lambda x, w, b: (f(x, w, b) * DY[0]).sum()  # noqa: E731
    with _no_warnings():
        got = torch.func.grad(loss, argnums=(0, 1, 2))(X[0], w, b)
    leaves = [t.clone().requires_grad_() for t in (X[0], w, b)]
    ref = torch.autograd.grad(loss(*leaves), leaves)
    for a, c in zip(got, ref):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# 7. The environment switch (a fresh process)
# ---------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import torch
    import normlib.functional as NF
    from normlib import fused
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    y = NF.layer_norm(x, (10,))
    ok = torch.allclose(y, torch.nn.functional.layer_norm(x, (10,)), rtol=1e-5, atol=1e-5)
    print(fused.available(), ok, fused.layout(x, (1,)))
    print(fused.status)
""")


def test_environment_switch_turns_the_kernels_off_in_a_fresh_process():
    env = {**os.environ, "NORMLIB_FUSED": "0"}
    run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    first, status = run.stdout.splitlines()
    assert first == "False True None"  # not available, same numbers as torch, layout refuses
    assert status.startswith("off") and "NORMLIB_FUSED=0" in status


# A missing compiler, a bad cache entry, the cache folders: tests/normlib/test_kernel_cache.py


# ---------------------------------------------------------------------------
# 8. autograd's version counter: the Function saves the input
# ---------------------------------------------------------------------------
INPLACE_OPS = {
    "layer_norm": (lambda x, w, b: NF.layer_norm(x, (10,), w, b), (3, 10), (10,)),
    "group_norm": (lambda x, w, b: NF.group_norm(x, 2, w, b), (2, 4, 9), (4,)),
    "batch_norm": (lambda x, w, b: NF.batch_norm(x, None, None, w, b, True), (3, 4, 8), (4,)),
    "rms_norm": (lambda x, w, b: NF.rms_norm(x, (10,), w), (3, 10), (10,)),
}


@pytest.mark.parametrize("path", ["fused", "whole-tensor"])
@pytest.mark.parametrize("op", list(INPLACE_OPS))
def test_modifying_the_input_in_place_before_backward_raises(op, path):
    f, shape, pshape = INPLACE_OPS[op]
    x0, w, b, dy = _data(shape, pshape, torch.float32)
    leaf = x0.clone().requires_grad_()
    with fused.disabled() if path == "whole-tensor" else contextlib.nullcontext():
        h = leaf * 1.0  # not a leaf: may be modified in place
        y = f(h, w, b)
        h.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            torch.autograd.grad(y, leaf, dy)


@pytest.mark.parametrize("op", list(INPLACE_OPS))
def test_modifying_the_weight_in_place_before_backward_raises(op):
    f, shape, pshape = INPLACE_OPS[op]
    x, w0, b, dy = _data(shape, pshape, torch.float32)
    x, w = x.requires_grad_(), w0.clone().requires_grad_()
    y = f(x, w, b)
    with torch.no_grad():
        w.mul_(2.0)  # as an optimizer step before the backward would
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(y, x, dy)


def test_unmodified_input_backward_succeeds_after_a_clone_is_modified():
    f, shape, pshape = INPLACE_OPS["layer_norm"]
    x0, w, b, dy = _data(shape, pshape, torch.float32)
    leaf = x0.clone().requires_grad_()
    h = leaf * 1.0
    y = f(h, w, b)
    h.clone().add_(1.0)  # a copy: the saved input is untouched
    (g,) = torch.autograd.grad(y, leaf, dy)
    assert torch.isfinite(g).all()


# ---------------------------------------------------------------------------
# 9. Found in review: transforms over the parameters, tracing, devices, profiler, build
# ---------------------------------------------------------------------------
PARAM_VMAP = {
    "layer_norm-weight": lambda x, p: NF.layer_norm(x, (16,), p, None),
    "layer_norm-bias": lambda x, p: NF.layer_norm(x, (16,), None, p),
    "rms_norm-weight": lambda x, p: NF.rms_norm(x, (16,), p),
    "group_norm-weight": lambda x, p: NF.group_norm(x.reshape(4, 16, 1), 4, p, None),
}


@pytest.mark.parametrize("name", list(PARAM_VMAP))
def test_vmap_over_the_affine_parameters_matches_a_loop(name):
    f = PARAM_VMAP[name]
    g = torch.Generator().manual_seed(40)
    x, ps = torch.randn(4, 16, generator=g), torch.randn(3, 16, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = torch.func.vmap(lambda p: f(x, p))(ps)
        per_sample = torch.func.vmap(torch.func.grad(lambda p: f(x, p).pow(3).sum()))(ps)
    torch.testing.assert_close(out, torch.stack([f(x, p) for p in ps]))
    loop = []
    for p in ps:
        p = p.clone().requires_grad_()
        f(x, p).pow(3).sum().backward()
        loop.append(p.grad)
    torch.testing.assert_close(per_sample, torch.stack(loop))


def test_fake_tensors_trace_through_the_whole_tensor_path():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(4, 16)
        assert fused.layout(x, (1,)) is None
        assert NF.layer_norm(x, (16,)).shape == (4, 16)


def test_fake_implementations_of_the_operators_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(2, 3, 8)
        y, m, v = fused._forward_op(x, None, None, 1, 2, 3, 1, 8, 1e-5, True, [2, 3, 1])
        dx, dw, db = fused._backward_op(x, x, m, v, None, 1, 2, 3, 1, 8, True, True, False)
    assert y.shape == x.shape and m.shape == v.shape == (2, 3, 1)
    assert dx.shape == x.shape and dw.shape == (3,) and db.shape == (0,)


def test_a_default_device_other_than_the_cpu_does_not_redirect_the_kernels_outputs():
    x = _t(4, 3, 5, 5)
    expected = F.batch_norm(x, None, None, training=True)
    torch.set_default_device("meta")
    try:
        y = NF.batch_norm(x, None, None, None, None, True)
    finally:
        torch.set_default_device("cpu")
    assert y.device.type == "cpu"
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_the_profiler_names_the_fused_operators():
    x = _t(4, 16).requires_grad_()
    with torch.profiler.profile() as prof:
        NF.layer_norm(x, (16,)).sum().backward()
    names = {e.name for e in prof.events()}
    assert {"normlib::fused_norm_forward", "normlib::fused_norm_backward"} <= names


def test_shape_layout_does_not_depend_on_whether_weight_and_bias_shapes_are_one_object():
    shape = (1, 4, 3, 1)
    same = fused.shape_layout((2, 4, 3, 5), (2, 3), shape, shape)
    equal = fused.shape_layout((2, 4, 3, 5), (2, 3), (1, 4, 3, 1), tuple([1, 4, 3, 1]))
    assert same == equal == fused.Layout(R=2, B=1, G=4, K=3, L=5)
