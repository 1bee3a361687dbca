"""normlib against PyTorch: modules against ``torch.nn``, ops against ``torch.nn.functional``.

Every case is a seeded random configuration (the seed is derived from the
parameters, so a failure reproduces by its test id).  Modules run several
training steps and then eval steps; each step compares the output, the input
gradient, the parameter gradients, the running buffers and
``num_batches_tracked``.  Tolerance: 1e-5 in float32, 1e-10 in float64
(relative to each entry, or absolute scaled by the tensor's largest entry when
that is above 1; see :func:`close`).
"""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import normlib.functional as nf
import normlib.nn as nl

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DT = {torch.float32: "f32", torch.float64: "f64"}


# --------------------------------------------------------------------------- helpers
def _gen(*params) -> torch.Generator:
    """A generator seeded from the test's parameters: each configuration has its own data."""
    return torch.Generator().manual_seed(zlib.crc32(repr(params).encode()))


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def _randn(gen: torch.Generator, shape, dtype, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale + shift).to(dtype)


def _input(gen: torch.Generator, shape, dtype) -> torch.Tensor:
    """Random input with a random per-call scale and offset (so the statistics matter)."""
    return _randn(gen, shape, dtype, _uniform(gen, 0.5, 3.0), _uniform(gen, -2.0, 2.0))


#: Smallest set S drawn in random cases.  A set of 2 or 3 entries is ill-conditioned:
#: its input gradient is a difference of nearly equal terms times 1/sigma, so in
#: float32 every implementation (torch's included) returns rounding noise there.
#: Those sets are tested in float64 (and the singular ones in their own test).
MIN_SET = {torch.float32: 4, torch.float64: 2}


def _draw(make, set_size, min_size: int):
    """Call ``make()`` until the shape it returns has ``set_size(shape) >= min_size``."""
    for _ in range(200):
        shape = make()
        if set_size(shape) >= min_size:
            return shape
    raise AssertionError("no shape with a large enough set S was drawn")


def _prod(xs) -> int:
    return int(np.prod(list(xs), dtype=np.int64))


def close(actual, expected, dtype, what: str) -> None:
    """Equal within ``TOL[dtype]``, relative to each entry or to the tensor's largest entry.

    The absolute part scales with ``max(1, max|expected|)``: a gradient of size 5
    carries five times the rounding error of one of size 1 (in float32, torch's
    own kernels differ from a float64 reference by a few 1e-5 on LN over three
    entries), so a fixed 1e-5 would test rounding luck, not the formula.
    """
    tol = TOL[dtype]
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def _randomize_state(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Random affine parameters and running statistics, so loading and eval are non-trivial."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(_randn(gen, p.shape, p.dtype, 0.5, 1.0 if name == "weight" else 0.0))
        for name, b in module.named_buffers():
            if name == "running_mean":
                b.copy_(_randn(gen, b.shape, b.dtype))
            elif name == "running_var":
                b.copy_(_randn(gen, b.shape, b.dtype).abs() + 0.5)
            elif name == "num_batches_tracked":
                b.fill_(_randint(gen, 0, 3))


def _compare_state(ours: torch.nn.Module, ref: torch.nn.Module, dtype, what: str, grads: bool = True) -> None:
    """Same parameter and buffer names; equal values; equal parameter gradients (if ``grads``)."""
    op, rp = dict(ours.named_parameters()), dict(ref.named_parameters())
    ob, rb = dict(ours.named_buffers()), dict(ref.named_buffers())
    assert sorted(op) == sorted(rp), f"{what}: parameters {sorted(op)} vs torch {sorted(rp)}"
    assert sorted(ob) == sorted(rb), f"{what}: buffers {sorted(ob)} vs torch {sorted(rb)}"
    for name, p in rp.items():
        close(op[name].detach(), p.detach(), dtype, f"{what}: parameter {name}")
        if not grads:
            continue
        if p.grad is None:
            assert op[name].grad is None, f"{what}: {name}.grad should be None"
        else:
            close(op[name].grad, p.grad, dtype, f"{what}: {name}.grad")
    for name, b in rb.items():
        if name == "num_batches_tracked":
            assert ob[name].dtype == torch.long
            assert int(ob[name]) == int(b), f"{what}: num_batches_tracked {int(ob[name])} vs torch {int(b)}"
        else:
            close(ob[name], b, dtype, f"{what}: buffer {name}")


def _step(ours, ref, x: torch.Tensor, gen: torch.Generator, dtype, what: str) -> None:
    """One forward and backward through both modules; compare everything."""
    ours.zero_grad()
    ref.zero_grad()
    xo = x.clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    yo, yr = ours(xo), ref(xr)
    assert isinstance(yo, torch.Tensor) and yo.shape == yr.shape and yo.dtype == yr.dtype
    close(yo, yr, dtype, f"{what}: output")
    g = _randn(gen, yr.shape, dtype)
    yo.backward(g)
    yr.backward(g)
    close(xo.grad, xr.grad, dtype, f"{what}: input gradient")
    _compare_state(ours, ref, dtype, what)


def _load_both_ways(ref, ours, args, kwargs) -> None:
    """torch's state_dict loads into ours (strict) and ours into a fresh torch module (strict)."""
    ours.load_state_dict(ref.state_dict(), strict=True)
    back = type(ref)(*args, **kwargs)
    back.load_state_dict(ours.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def _run_module_case(ours_cls, ref_cls, args, kwargs, shapes_train, shapes_eval, dtype, gen, what):
    ref = ref_cls(*args, **kwargs, dtype=dtype)
    ours = ours_cls(*args, **kwargs, dtype=dtype)
    _randomize_state(ref, gen)
    _load_both_ways(ref, ours, args, {**kwargs, "dtype": dtype})
    _compare_state(ours, ref, dtype, f"{what} after load")
    for i, shape in enumerate(shapes_train):
        ours.train(), ref.train()
        _step(ours, ref, _input(gen, shape, dtype), gen, dtype, f"{what} train step {i} {list(shape)}")
    for i, shape in enumerate(shapes_eval):
        ours.eval(), ref.eval()
        _step(ours, ref, _input(gen, shape, dtype), gen, dtype, f"{what} eval step {i} {list(shape)}")
    # and the trained state goes back into torch, which then computes what we compute
    fresh = ref_cls(*args, **kwargs, dtype=dtype)
    fresh.load_state_dict(ours.state_dict(), strict=True)
    fresh.eval()
    _compare_state(ours, fresh, dtype, f"{what} state loaded back into torch", grads=False)
    x = _input(gen, shapes_eval[-1], dtype)
    with torch.no_grad():
        close(ours(x), fresh(x), dtype, f"{what}: torch module loaded from our state_dict")


# --------------------------------------------------------------------------- BatchNorm
BN = [
    (nl.BatchNorm1d, torch.nn.BatchNorm1d, 2),
    (nl.BatchNorm1d, torch.nn.BatchNorm1d, 3),
    (nl.BatchNorm2d, torch.nn.BatchNorm2d, 4),
    (nl.BatchNorm3d, torch.nn.BatchNorm3d, 5),
]


@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=lambda m: f"mom{m}")
@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ours_cls,ref_cls,ndim", BN, ids=lambda v: v if isinstance(v, int) else None)
def test_batchnorm_module_matches_torch(ours_cls, ref_cls, ndim, dtype, affine, track, momentum):
    gen = _gen("bn", ours_cls.__name__, ndim, dtype, affine, track, momentum)
    C = _randint(gen, 1, 5)
    spatial = [_randint(gen, 1, 4) for _ in range(ndim - 2)]

    def shape():  # the batch size changes between steps, as it may in training
        return _draw(lambda: (_randint(gen, 2, 5), C, *spatial),
                     lambda s: s[0] * _prod(s[2:]), MIN_SET[dtype])

    _run_module_case(
        ours_cls, ref_cls, (C,),
        {"momentum": momentum, "affine": affine, "track_running_stats": track, "eps": 1e-5},
        [shape() for _ in range(3)], [shape() for _ in range(2)], dtype, gen,
        f"{ours_cls.__name__}({C}, affine={affine}, track={track}, momentum={momentum})",
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
def test_batchnorm_cumulative_average_is_mean_of_batch_statistics(dtype):
    """momentum=None: after k batches the running mean is the plain average of the k batch means."""
    gen = _gen("cma", dtype)
    bn = nl.BatchNorm2d(3, momentum=None, dtype=dtype)
    xs = [_input(gen, (4, 3, 2, 2), dtype) for _ in range(5)]
    for x in xs:
        bn(x)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0)
    variances = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in xs]).mean(0)
    close(bn.running_mean, means, dtype, "running_mean")
    close(bn.running_var, variances, dtype, "running_var")
    assert int(bn.num_batches_tracked) == 5


# --------------------------------------------------------------------------- InstanceNorm
IN = [
    (nl.InstanceNorm1d, torch.nn.InstanceNorm1d, 3, False),
    (nl.InstanceNorm1d, torch.nn.InstanceNorm1d, 2, True),
    (nl.InstanceNorm2d, torch.nn.InstanceNorm2d, 4, False),
    (nl.InstanceNorm2d, torch.nn.InstanceNorm2d, 3, True),
    (nl.InstanceNorm3d, torch.nn.InstanceNorm3d, 5, False),
    (nl.InstanceNorm3d, torch.nn.InstanceNorm3d, 4, True),
]


@pytest.mark.parametrize("momentum", [0.1, None], ids=lambda m: f"mom{m}")
@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize(
    "ours_cls,ref_cls,ndim,unbatched", IN,
    ids=[f"{o.__name__}-{n}D{'-unbatched' if u else ''}" for o, _, n, u in IN],
)
def test_instancenorm_module_matches_torch(ours_cls, ref_cls, ndim, unbatched, dtype, affine, track, momentum):
    gen = _gen("in", ours_cls.__name__, ndim, dtype, affine, track, momentum)
    C = _randint(gen, 1, 5)
    nsp = ndim - (1 if unbatched else 2)
    spatial = _draw(lambda: [_randint(gen, 2, 4)] + [_randint(gen, 1, 3) for _ in range(nsp - 1)],
                    _prod, MIN_SET[dtype])

    def shape():
        return (C, *spatial) if unbatched else (_randint(gen, 1, 4), C, *spatial)

    _run_module_case(
        ours_cls, ref_cls, (C,),
        {"momentum": momentum, "affine": affine, "track_running_stats": track, "eps": 1e-5},
        [shape() for _ in range(3)], [shape() for _ in range(2)], dtype, gen,
        f"{ours_cls.__name__}({C}, affine={affine}, track={track}, momentum={momentum})",
    )


def test_instancenorm_default_has_no_parameters_or_buffers():
    ours, ref = nl.InstanceNorm2d(3), torch.nn.InstanceNorm2d(3)
    assert list(ours.state_dict()) == list(ref.state_dict()) == []
    assert (ours.affine, ours.track_running_stats) == (False, False)


# --------------------------------------------------------------------------- LayerNorm
LN = [(ndim, k) for ndim in (2, 3, 4, 5) for k in (1, 2, 3) if k <= ndim]
LN_AFFINE = [(True, True), (True, False), (False, True)]


@pytest.mark.parametrize("elementwise_affine,bias", LN_AFFINE, ids=["affine", "weight-only", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim,k", LN, ids=[f"{n}D-last{k}" for n, k in LN])
def test_layernorm_module_matches_torch(ndim, k, dtype, elementwise_affine, bias):
    gen = _gen("ln", ndim, k, dtype, elementwise_affine, bias)
    full = _draw(lambda: [_randint(gen, 1, 4) for _ in range(ndim - 1)] + [_randint(gen, 2, 6)],
                 lambda s: _prod(s[-k:]), MIN_SET[dtype])
    normalized_shape = tuple(full[-k:])
    arg = normalized_shape[0] if k == 1 and _randint(gen, 0, 1) else normalized_shape  # int or tuple
    lead = full[:-k]

    def shape():
        return (*[max(1, d + _randint(gen, 0, 1)) for d in lead], *normalized_shape)

    _run_module_case(
        nl.LayerNorm, torch.nn.LayerNorm, (arg,),
        {"elementwise_affine": elementwise_affine, "bias": bias, "eps": 1e-5},
        [shape() for _ in range(2)], [shape()], dtype, gen, f"LayerNorm({arg})",
    )


# --------------------------------------------------------------------------- GroupNorm
GN = [(ndim, C, G) for ndim in (2, 3, 4, 5) for C, G in ((6, 1), (6, 2), (6, 3), (6, 6), (8, 2), (8, 4))]
# a 2-D input's group is C/G entries: too few for float32 unless C/G >= MIN_SET (see MIN_SET)
GN_CASES = [
    pytest.param(n, c, g, dt, id=f"{n}D-C{c}-G{g}-{DT[dt]}")
    for n, c, g in GN for dt in DTYPES if n > 2 or c // g >= MIN_SET[dt]
]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("ndim,C,G,dtype", GN_CASES)
def test_groupnorm_module_matches_torch(ndim, C, G, dtype, affine):
    gen = _gen("gn", ndim, C, G, dtype, affine)
    spatial = _draw(lambda: [_randint(gen, 1, 4) for _ in range(ndim - 2)],
                    lambda sp: C // G * _prod(sp), MIN_SET[dtype])

    def shape():
        return (_randint(gen, 1, 4), C, *spatial)

    _run_module_case(
        nl.GroupNorm, torch.nn.GroupNorm, (G, C), {"affine": affine, "eps": 1e-5},
        [shape() for _ in range(2)], [shape()], dtype, gen, f"GroupNorm({G}, {C})",
    )


# --------------------------------------------------------------------------- functional ops
def _fn_compare(ours_fn, ref_fn, x, tensors: dict, dtype, what, **kw):
    """Run ``ours_fn`` and ``ref_fn`` on clones; compare outputs, and gradients of every leaf."""
    xo, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    to = {k: (v.clone().requires_grad_(True) if v is not None else None) for k, v in tensors.items()}
    tr = {k: (v.clone().requires_grad_(True) if v is not None else None) for k, v in tensors.items()}
    yo, yr = ours_fn(xo, **to, **kw), ref_fn(xr, **tr, **kw)
    close(yo, yr, dtype, f"{what}: output")
    g = torch.randn(yr.shape, dtype=torch.float64, generator=_gen(what)).to(dtype)
    yo.backward(g)
    yr.backward(g)
    close(xo.grad, xr.grad, dtype, f"{what}: input gradient")
    for k in tensors:
        if to[k] is not None:
            close(to[k].grad, tr[k].grad, dtype, f"{what}: {k} gradient")
    return yo


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("momentum", [0.0, 0.1, 1.0], ids=lambda m: f"mom{m}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_functional_batch_norm_training_updates_running_stats_in_place(ndim, dtype, momentum, affine):
    gen = _gen("fbn", ndim, dtype, momentum, affine)
    C = _randint(gen, 1, 5)
    shape = _draw(lambda: (_randint(gen, 2, 4), C, *[_randint(gen, 1, 3) for _ in range(ndim - 2)]),
                  lambda s: s[0] * _prod(s[2:]), MIN_SET[dtype])
    x = _input(gen, shape, dtype)
    rm_o, rv_o = _randn(gen, (C,), dtype), _randn(gen, (C,), dtype).abs() + 0.5
    rm_r, rv_r = rm_o.clone(), rv_o.clone()
    rm_id, rv_id = rm_o.data_ptr(), rv_o.data_ptr()
    w, b = (_randn(gen, (C,), dtype, 0.5, 1.0), _randn(gen, (C,), dtype)) if affine else (None, None)
    expect_mean = (1 - momentum) * rm_o + momentum * x.mean(dim=[d for d in range(ndim) if d != 1])
    n = x.numel() // C
    unbiased = x.var(dim=[d for d in range(ndim) if d != 1], unbiased=True)
    expect_var = (1 - momentum) * rv_o + momentum * unbiased
    assert n > 1
    _fn_compare(lambda x, weight, bias: nf.batch_norm(x, rm_o, rv_o, weight, bias, True, momentum, 1e-5),
                lambda x, weight, bias: TF.batch_norm(x, rm_r, rv_r, weight, bias, True, momentum, 1e-5),
                x, {"weight": w, "bias": b}, dtype, f"batch_norm train {list(shape)}")
    assert rm_o.data_ptr() == rm_id and rv_o.data_ptr() == rv_id  # in place, same storage
    close(rm_o, rm_r, dtype, "running_mean vs torch")
    close(rv_o, rv_r, dtype, "running_var vs torch")
    close(rm_o, expect_mean, dtype, "running_mean vs formula")
    close(rv_o, expect_var, dtype, "running_var vs formula (unbiased variance)")


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_functional_batch_norm_eval_uses_running_stats(ndim, dtype, affine):
    gen = _gen("fbn-eval", ndim, dtype, affine)
    C = _randint(gen, 1, 5)
    shape = (_randint(gen, 1, 4), C, *[_randint(gen, 1, 3) for _ in range(ndim - 2)])
    x = _input(gen, shape, dtype)
    rm, rv = _randn(gen, (C,), dtype), _randn(gen, (C,), dtype).abs() + 0.5
    before = rm.clone(), rv.clone()
    w, b = (_randn(gen, (C,), dtype, 0.5, 1.0), _randn(gen, (C,), dtype)) if affine else (None, None)
    _fn_compare(lambda x, weight, bias: nf.batch_norm(x, rm, rv, weight, bias, False, 0.1, 1e-3),
                lambda x, weight, bias: TF.batch_norm(x, rm, rv, weight, bias, False, 0.1, 1e-3),
                x, {"weight": w, "bias": b}, dtype, f"batch_norm eval {list(shape)}")
    assert torch.equal(rm, before[0]) and torch.equal(rv, before[1]), "eval must not move the running stats"


@pytest.mark.parametrize("use_input_stats", [True, False], ids=["input-stats", "running-stats"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim", [3, 4, 5])
def test_functional_instance_norm_with_running_stats(ndim, dtype, affine, use_input_stats):
    gen = _gen("fin", ndim, dtype, affine, use_input_stats)
    C = _randint(gen, 1, 4)
    shape = _draw(lambda: (_randint(gen, 1, 4), C, _randint(gen, 2, 4), *[_randint(gen, 1, 3) for _ in range(ndim - 3)]),
                  lambda s: _prod(s[2:]), MIN_SET[dtype])
    x = _input(gen, shape, dtype)
    rm_o, rv_o = _randn(gen, (C,), dtype), _randn(gen, (C,), dtype).abs() + 0.5
    rm_r, rv_r = rm_o.clone(), rv_o.clone()
    rm0, rv0 = rm_o.clone(), rv_o.clone()
    w, b = (_randn(gen, (C,), dtype, 0.5, 1.0), _randn(gen, (C,), dtype)) if affine else (None, None)
    _fn_compare(
        lambda x, weight, bias: nf.instance_norm(x, rm_o, rv_o, weight, bias, use_input_stats, 0.3, 1e-5),
        lambda x, weight, bias: TF.instance_norm(x, rm_r, rv_r, weight, bias, use_input_stats, 0.3, 1e-5),
        x, {"weight": w, "bias": b}, dtype, f"instance_norm {list(shape)}")
    close(rm_o, rm_r, dtype, "running_mean")
    close(rv_o, rv_r, dtype, "running_var")
    if use_input_stats:  # moved toward the batch average of the per-instance statistics
        spatial = tuple(range(2, ndim))
        close(rm_o, 0.7 * rm0 + 0.3 * x.mean(dim=spatial).mean(0), dtype, "running_mean vs formula")
        close(rv_o, 0.7 * rv0 + 0.3 * x.var(dim=spatial, unbiased=True).mean(0), dtype,
              "running_var vs formula (unbiased per-instance variance, averaged over N)")
    else:  # normalizing with the running statistics leaves them alone
        assert torch.equal(rm_o, rm0) and torch.equal(rv_o, rv0)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim", [3, 4, 5])
def test_functional_instance_norm_without_running_stats(ndim, dtype, affine):
    gen = _gen("fin-none", ndim, dtype, affine)
    C = _randint(gen, 1, 4)
    shape = _draw(lambda: (_randint(gen, 1, 4), C, _randint(gen, 2, 4), *[_randint(gen, 1, 3) for _ in range(ndim - 3)]),
                  lambda s: _prod(s[2:]), MIN_SET[dtype])
    w, b = (_randn(gen, (C,), dtype, 0.5, 1.0), _randn(gen, (C,), dtype)) if affine else (None, None)
    _fn_compare(lambda x, weight, bias: nf.instance_norm(x, None, None, weight, bias),
                lambda x, weight, bias: TF.instance_norm(x, None, None, weight, bias),
                _input(gen, shape, dtype), {"weight": w, "bias": b}, dtype, f"instance_norm {list(shape)}")


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ndim,k", LN, ids=[f"{n}D-last{k}" for n, k in LN])
def test_functional_layer_norm(ndim, k, dtype, affine):
    gen = _gen("fln", ndim, k, dtype, affine)
    shape = _draw(lambda: tuple(_randint(gen, 1, 4) for _ in range(ndim - 1)) + (_randint(gen, 2, 5),),
                  lambda s: _prod(s[-k:]), MIN_SET[dtype])
    ns = shape[-k:]
    w = _randn(gen, ns, dtype, 0.5, 1.0) if affine != "none" else None
    b = _randn(gen, ns, dtype) if affine == "both" else None
    _fn_compare(lambda x, weight, bias: nf.layer_norm(x, ns, weight, bias, 1e-5),
                lambda x, weight, bias: TF.layer_norm(x, ns, weight, bias, 1e-5),
                _input(gen, shape, dtype), {"weight": w, "bias": b}, dtype, f"layer_norm {list(shape)} {ns}")


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("ndim,C,G,dtype", GN_CASES[1::2])
def test_functional_group_norm(ndim, C, G, dtype, affine):
    gen = _gen("fgn", ndim, C, G, dtype, affine)
    shape = _draw(lambda: (_randint(gen, 2, 3), C, *[_randint(gen, 1, 4) for _ in range(ndim - 2)]),
                  lambda s: C // G * _prod(s[2:]), MIN_SET[dtype])
    w = _randn(gen, (C,), dtype, 0.5, 1.0) if affine != "none" else None
    b = _randn(gen, (C,), dtype) if affine == "both" else None
    _fn_compare(lambda x, weight, bias: nf.group_norm(x, G, weight, bias, 1e-5),
                lambda x, weight, bias: TF.group_norm(x, G, weight, bias, 1e-5),
                _input(gen, shape, dtype), {"weight": w, "bias": b}, dtype, f"group_norm {list(shape)} G={G}")


# --------------------------------------------------------------------------- numpy in, numpy out
def _np_case(op: str, dtype):
    """(ours on numpy, torch reference on tensors) for one functional op, with every argument."""
    gen = _gen("np", op, dtype)
    x = _input(gen, (3, 4, 3, 2), dtype)
    C = 4
    w, b = _randn(gen, (C,), dtype, 0.5, 1.0), _randn(gen, (C,), dtype)
    rm, rv = _randn(gen, (C,), dtype), _randn(gen, (C,), dtype).abs() + 0.5
    if op == "layer_norm":
        w, b = _randn(gen, (3, 2), dtype, 0.5, 1.0), _randn(gen, (3, 2), dtype)
    return x, w, b, rm, rv


NP_OPS = {
    "batch_norm-train": (lambda x, w, b, rm, rv, F: F.batch_norm(x, rm, rv, w, b, True, 0.2, 1e-5), True),
    "batch_norm-eval": (lambda x, w, b, rm, rv, F: F.batch_norm(x, rm, rv, w, b, False, 0.2, 1e-5), False),
    "batch_norm-nostats": (lambda x, w, b, rm, rv, F: F.batch_norm(x, None, None, w, b, True, 0.2, 1e-5), False),
    "instance_norm-train": (lambda x, w, b, rm, rv, F: F.instance_norm(x, rm, rv, w, b, True, 0.2, 1e-5), True),
    "instance_norm-eval": (lambda x, w, b, rm, rv, F: F.instance_norm(x, rm, rv, w, b, False, 0.2, 1e-5), False),
    "instance_norm-plain": (lambda x, w, b, rm, rv, F: F.instance_norm(x), False),
    "layer_norm": (lambda x, w, b, rm, rv, F: F.layer_norm(x, (3, 2), w, b, 1e-5), False),
    "layer_norm-plain": (lambda x, w, b, rm, rv, F: F.layer_norm(x, [2]), False),
    "group_norm": (lambda x, w, b, rm, rv, F: F.group_norm(x, 2, w, b, 1e-5), False),
    "group_norm-plain": (lambda x, w, b, rm, rv, F: F.group_norm(x, 4), False),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("op", list(NP_OPS))
def test_numpy_in_numpy_out_equals_torch(op, dtype):
    fn, updates = NP_OPS[op]
    x, w, b, rm, rv = _np_case(op, dtype)
    np_args = [t.numpy().copy() for t in (x, w, b, rm, rv)]
    rm_np, rv_np = np_args[3], np_args[4]
    y_np = fn(*np_args, nf)
    y_t = fn(x, w, b, rm, rv, TF)
    assert type(y_np) is np.ndarray, f"{op}: numpy in must give numpy out, got {type(y_np).__name__}"
    assert y_np.dtype == np_args[0].dtype and y_np.shape == tuple(y_t.shape)
    close(torch.from_numpy(y_np), y_t, dtype, f"{op}: numpy output")
    # running stats as numpy arrays are updated in place, like torch's buffers
    close(torch.from_numpy(rm_np), rm, dtype, f"{op}: running_mean")
    close(torch.from_numpy(rv_np), rv, dtype, f"{op}: running_var")
    moved = not np.array_equal(rm_np, _np_case(op, dtype)[3].numpy())
    assert moved == updates, f"{op}: running stats moved={moved}, expected {updates}"


@pytest.mark.parametrize("ours_cls,ref_cls", [
    (nl.BatchNorm1d, torch.nn.BatchNorm1d), (nl.BatchNorm2d, torch.nn.BatchNorm2d),
    (nl.BatchNorm3d, torch.nn.BatchNorm3d), (nl.InstanceNorm1d, torch.nn.InstanceNorm1d),
    (nl.InstanceNorm2d, torch.nn.InstanceNorm2d), (nl.InstanceNorm3d, torch.nn.InstanceNorm3d),
])
@pytest.mark.parametrize("affine,track", list(itertools.product([True, False], [True, False])))
def test_state_dict_keys_and_repr_match_torch(ours_cls, ref_cls, affine, track):
    ours, ref = ours_cls(5, affine=affine, track_running_stats=track), ref_cls(5, affine=affine, track_running_stats=track)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    assert ours.extra_repr() == ref.extra_repr()


# --------------------------------------------------------------------------- singular sets
@pytest.mark.parametrize("case", ["gn-one-channel-per-group", "in-one-position-eval", "ln-one-entry"])
def test_singleton_sets_match_torch(case):
    """A set S of one entry has variance 0: the output is bias and the input gradient 0, as in torch."""
    gen = _gen("singleton", case)
    dtype = torch.float64
    x = _input(gen, (3, 4), dtype)
    if case == "gn-one-channel-per-group":
        w, b = _randn(gen, (4,), dtype), _randn(gen, (4,), dtype)
        ours, ref = (lambda x, weight, bias: nf.group_norm(x, 4, weight, bias)), \
            (lambda x, weight, bias: TF.group_norm(x, 4, weight, bias))
    elif case == "ln-one-entry":
        x = _input(gen, (3, 4, 1), dtype)
        w, b = _randn(gen, (1,), dtype), _randn(gen, (1,), dtype)
        ours, ref = (lambda x, weight, bias: nf.layer_norm(x, 1, weight, bias)), \
            (lambda x, weight, bias: TF.layer_norm(x, (1,), weight, bias))
    else:  # eval Instance Norm may see one position: it uses the running statistics
        x = _input(gen, (3, 4, 1), dtype)
        rm, rv = _randn(gen, (4,), dtype), _randn(gen, (4,), dtype).abs() + 0.5
        w, b = _randn(gen, (4,), dtype), _randn(gen, (4,), dtype)
        ours = lambda x, weight, bias: nf.instance_norm(x, rm, rv, weight, bias, use_input_stats=False)  # noqa: E731
        ref = lambda x, weight, bias: TF.instance_norm(x, rm, rv, weight, bias, use_input_stats=False)  # noqa: E731
    y = _fn_compare(ours, ref, x, {"weight": w, "bias": b}, dtype, case)
    if case != "in-one-position-eval":
        close(y.detach(), b.expand_as(y) if y.ndim == 3 else b.expand(3, 4), dtype, "output is the bias")


# --------------------------------------------------------------------------- layouts and grad modes
LAYOUTS = {
    "channels_last": lambda x: x.contiguous(memory_format=torch.channels_last),
    "permuted": lambda x: x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
    "expanded": lambda x: x[:1].expand(x.shape),
    "strided": lambda x: torch.cat([x, x], dim=3)[..., ::2],
}
FN_PAIRS = {
    "batch_norm": (lambda x, w, b: nf.batch_norm(x, None, None, w, b, True),
                   lambda x, w, b: TF.batch_norm(x, None, None, w, b, True)),
    "instance_norm": (lambda x, w, b: nf.instance_norm(x, None, None, w, b),
                      lambda x, w, b: TF.instance_norm(x, None, None, w, b)),
    "group_norm": (lambda x, w, b: nf.group_norm(x, 3, w, b), lambda x, w, b: TF.group_norm(x, 3, w, b)),
    "layer_norm": (lambda x, w, b: nf.layer_norm(x, x.shape[1:], w[:, None, None].expand(x.shape[1:]), None),
                   lambda x, w, b: TF.layer_norm(x, x.shape[1:], w[:, None, None].expand(x.shape[1:]), None)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("op", list(FN_PAIRS))
def test_non_contiguous_inputs_match_torch(op, layout, dtype):
    """channels_last, permuted, expanded (stride 0) and strided inputs: same numbers and gradients."""
    gen = _gen("layout", op, layout, dtype)
    x = LAYOUTS[layout](_input(gen, (4, 6, 3, 5), dtype))
    assert not x.is_contiguous()
    ours, ref = FN_PAIRS[op]
    w, b = _randn(gen, (6,), dtype, 0.5, 1.0), _randn(gen, (6,), dtype)
    xo, xr = x.detach().requires_grad_(True), x.detach().clone().requires_grad_(True)
    wo, wr = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    yo, yr = ours(xo, wo, b), ref(xr, wr, b)
    close(yo, yr, dtype, f"{op} {layout}: output")
    g = LAYOUTS[layout](_randn(gen, yr.shape, dtype))
    yo.backward(g)
    yr.backward(g)
    close(xo.grad, xr.grad, dtype, f"{op} {layout}: input gradient")
    close(wo.grad, wr.grad, dtype, f"{op} {layout}: weight gradient")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("op", list(FN_PAIRS))
def test_parameter_gradients_when_the_input_needs_none(op, dtype):
    """A first layer: the input does not require grad, the weight and bias do."""
    gen = _gen("param-only", op, dtype)
    x = _input(gen, (4, 6, 3, 2), dtype)
    ours, ref = FN_PAIRS[op]
    grads = []
    for fn in (ours, ref):
        w = _randn(_gen("w", op), (6,), dtype, 0.5, 1.0).requires_grad_(True)
        b = _randn(_gen("b", op), (6,), dtype).requires_grad_(True)
        y = fn(x, w, b if op != "layer_norm" else None)
        assert y.requires_grad
        y.backward(_randn(_gen("g", op), y.shape, dtype))
        grads.append((w.grad, b.grad))
    close(grads[0][0], grads[1][0], dtype, f"{op}: weight gradient")
    if op != "layer_norm":
        close(grads[0][1], grads[1][1], dtype, f"{op}: bias gradient")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("ours_cls,ref_cls", [(nl.BatchNorm2d, torch.nn.BatchNorm2d),
                                              (nl.InstanceNorm2d, torch.nn.InstanceNorm2d)])
def test_training_step_under_no_grad_and_inference_mode(ours_cls, ref_cls, mode):
    """Running statistics still update (in place) when autograd is off, as in torch."""
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    ours, ref = ours_cls(3, track_running_stats=True), ref_cls(3, track_running_stats=True)
    gen = _gen("modes", ours_cls.__name__, mode)
    for _ in range(2):
        x = _input(gen, (4, 3, 3, 3), torch.float32)
        with ctx():
            yo, yr = ours(x), ref(x)
        assert not yo.requires_grad
        close(yo, yr, torch.float32, f"{mode}: output")
    _compare_state(ours, ref, torch.float32, mode, grads=False)


def test_layer_norm_accepts_numpy_and_torch_integer_shapes():
    x = _input(_gen("ns"), (2, 3, 4), torch.float64)
    ref = TF.layer_norm(x, (4,))
    for ns in (4, np.int64(4), [4], (np.int32(4),), torch.Size([4])):
        close(nf.layer_norm(x, ns), ref, torch.float64, f"normalized_shape={ns!r}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT.get)
@pytest.mark.parametrize("ours_cls,ref_cls,args,shape", [
    (nl.BatchNorm1d, torch.nn.BatchNorm1d, (3,), (5, 3)),
    (nl.BatchNorm2d, torch.nn.BatchNorm2d, (3,), (4, 3, 2, 2)),
    (nl.InstanceNorm2d, torch.nn.InstanceNorm2d, (3,), (2, 3, 2, 3)),
    (nl.GroupNorm, torch.nn.GroupNorm, (2, 4), (2, 4, 2, 2)),
    (nl.LayerNorm, torch.nn.LayerNorm, ((2, 3),), (4, 2, 3)),
], ids=lambda v: v.__name__ if isinstance(v, type) and v.__module__.startswith("normlib") else None)
def test_weight_without_bias_matches_torch(ours_cls, ref_cls, args, shape, dtype):
    """torch 2.x's ``bias=False`` (a weight but no bias): same parameters, state_dict and numbers."""
    gen = _gen("nobias", ours_cls.__name__, dtype)
    kwargs = {"bias": False} if ours_cls is nl.LayerNorm else {"affine": True, "bias": False}
    if ours_cls is nl.InstanceNorm2d:
        kwargs["track_running_stats"] = True
    ours = ours_cls(*args, **kwargs, dtype=dtype)
    assert ours.bias is None and ours.weight is not None
    assert ours.extra_repr() == ref_cls(*args, **kwargs, dtype=dtype).extra_repr()
    _run_module_case(ours_cls, ref_cls, args, kwargs, [shape, shape], [shape], dtype, gen, f"{ours_cls.__name__} bias=False")


@pytest.mark.parametrize("ours_cls,ref_cls,args", [
    (nl.BatchNorm2d, torch.nn.BatchNorm2d, (3,)), (nl.InstanceNorm1d, torch.nn.InstanceNorm1d, (3,)),
    (nl.GroupNorm, torch.nn.GroupNorm, (1, 3)), (nl.LayerNorm, torch.nn.LayerNorm, ((3, 2),)),
])
def test_reset_parameters_and_repr_match_torch(ours_cls, ref_cls, args):
    kwargs = {} if ours_cls in (nl.GroupNorm, nl.LayerNorm) else {"affine": True, "track_running_stats": True}
    ours, ref = ours_cls(*args, **kwargs), ref_cls(*args, **kwargs)
    _randomize_state(ours, _gen("reset", ours_cls.__name__))
    ours.reset_parameters()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    assert ours.extra_repr() == ref.extra_repr()


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (0, 3, 2, 2)])
def test_empty_batch_in_training_is_allowed_as_in_torch(shape):
    """N = 0 (e.g. no detections in a batch): empty output, running stats kept, the batch counted."""
    cls = {2: (nl.BatchNorm1d, torch.nn.BatchNorm1d), 3: (nl.BatchNorm1d, torch.nn.BatchNorm1d),
           4: (nl.BatchNorm2d, torch.nn.BatchNorm2d)}[len(shape)]
    ours, ref = cls[0](3), cls[1](3)
    _randomize_state(ref, _gen("empty", shape))
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(shape)
    yo, yr = ours(x), ref(x)
    assert yo.shape == yr.shape == x.shape
    _compare_state(ours, ref, torch.float32, "empty batch", grads=False)
    y_np = nf.batch_norm(x.numpy(), None, None, training=True)
    assert type(y_np) is np.ndarray and y_np.shape == shape


@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_eval_output_keeps_the_input_dtype_with_float64_statistics_numpy(op):
    """NumPy: float32 input, float64 running stats and parameters: the output is float32, like training's.

    (torch tensors of mixed dtypes raise, as torch does: see test_errors.py.)"""
    gen = _gen("mixed", op, "numpy")
    x = _input(gen, (2, 3, 4), torch.float32)
    rm, rv = _randn(gen, (3,), torch.float64), _randn(gen, (3,), torch.float64).abs() + 0.5
    w, b = _randn(gen, (3,), torch.float64), _randn(gen, (3,), torch.float64)
    ref = TF.batch_norm(x.double(), rm, rv, w, b, False, 0.1, 1e-5)  # instance_norm in eval is the same map
    args = [a.numpy() for a in (x, rm, rv, w, b)]
    fn = nf.batch_norm if op == "batch_norm" else nf.instance_norm
    y = fn(*args, False, 0.1, 1e-5)
    assert y.dtype == args[0].dtype
    close(torch.as_tensor(y), ref.float(), torch.float32, f"{op} mixed dtypes")
