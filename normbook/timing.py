"""Timing normlib's ops against PyTorch's native kernels (the numbers of "How fast is normlib?").

Four implementations of each normalization are compared on the same inputs,
float32, forward, backward and forward + backward:

* ``native``: PyTorch's own kernel (``torch.nn.functional.batch_norm`` etc.);
* ``normlib``: :mod:`normlib.functional` as it runs by default: the one core,
  analytic backward, affine fused, on :mod:`normlib.fused`'s one-loop-per-set
  kernels;
* ``unfused``: the same calls with the fused kernels off
  (:func:`normlib.fused.disabled`), i.e. the core's whole-tensor torch path;
* ``autograd``: the textbook definition written with torch's elementwise ops
  (mean, subtract, square, mean, add, sqrt, divide, multiply, add), its
  gradient left to autograd (:func:`elementwise_norm`).

Runs are interleaved (one run of each implementation per round, so a slow
moment of the machine hits all of them alike) and summarised by the median.
Timings are wall-clock and vary from run to run: show them, assert only coarse
facts about them.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from normlib import functional as NF
from normlib import fused

__all__ = ["CASES", "Case", "elementwise_norm", "inputs", "interleaved", "time_case", "kernel_table",
           "format_table", "one_thread", "unfused", "count_passes", "count_reductions"]

Timer = Callable[[], None]


def elementwise_norm(x: torch.Tensor, dims: tuple[int, ...], eps: float, weight=None, bias=None,
                     groups: int | None = None, center: bool = True) -> torch.Tensor:
    """``(x − mean)/sqrt(var + eps)·weight + bias`` over ``dims`` from elementwise ops; autograd differentiates it.

    ``groups`` reshapes ``(N, C, *)`` to ``(N, G, C/G, *)`` first (Group Norm;
    ``dims`` then refer to the reshaped tensor).  ``center=False`` divides by the
    root mean square (RMSNorm).  ``weight``/``bias`` broadcast against ``x``.
    """
    shape = x.shape
    v = x.reshape(shape[0], groups, -1) if groups else x
    if center:
        mean = v.mean(dims, keepdim=True)
        d = v - mean
        var = (d * d).mean(dims, keepdim=True)
    else:
        d, var = v, (v * v).mean(dims, keepdim=True)
    y = (d / torch.sqrt(var + eps)).reshape(shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


@dataclass
class Case:
    """One op on one shape: how to call each implementation with inputs ``(x, weight, bias)``."""

    name: str
    shape: tuple[int, ...]
    param_shape: tuple[int, ...]
    impls: dict[str, Callable] = field(default_factory=dict)
    has_bias: bool = True


def _channel(p):
    return p.reshape(1, -1, 1, 1)


def _rms_impls() -> dict[str, Callable]:
    out: dict[str, Callable] = {
        "native": lambda x, w, b: F.rms_norm(x, (x.shape[-1],), w, 1e-6),
        "autograd": lambda x, w, b: elementwise_norm(x, (-1,), 1e-6, w, center=False),
    }
    try:  # written by another chapter's author; benchmarked when present
        from normlib.rms import rms_norm
    except ImportError:  # pragma: no cover
        return out
    out["normlib"] = lambda x, w, b: rms_norm(x, (x.shape[-1],), w, 1e-6)
    return out


def unfused(f: Callable) -> Callable:
    """``f`` run with :mod:`normlib.fused` off: the core's whole-tensor path (its backward too)."""
    def run(*args):
        with fused.disabled():
            return f(*args)
    return run


def _with_unfused(impls: dict[str, Callable]) -> dict[str, Callable]:
    order = ("native", "normlib", "unfused", "autograd")
    impls = {**impls, "unfused": unfused(impls["normlib"])} if "normlib" in impls else impls
    return {k: impls[k] for k in order if k in impls}


def _cases() -> list[Case]:
    return [
        Case("BatchNorm2d", (32, 64, 32, 32), (64,), _with_unfused({
            "native": lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
            "normlib": lambda x, w, b: NF.batch_norm(x, None, None, w, b, True),
            "autograd": lambda x, w, b: elementwise_norm(x, (0, 2, 3), 1e-5, _channel(w), _channel(b)),
        })),
        Case("GroupNorm G=32", (32, 64, 32, 32), (64,), _with_unfused({
            "native": lambda x, w, b: F.group_norm(x, 32, w, b),
            "normlib": lambda x, w, b: NF.group_norm(x, 32, w, b),
            "autograd": lambda x, w, b: elementwise_norm(x, (2,), 1e-5, _channel(w), _channel(b), groups=32),
        })),
        Case("LayerNorm", (8, 512, 768), (768,), _with_unfused({
            "native": lambda x, w, b: F.layer_norm(x, (768,), w, b),
            "normlib": lambda x, w, b: NF.layer_norm(x, (768,), w, b),
            "autograd": lambda x, w, b: elementwise_norm(x, (-1,), 1e-5, w, b),
        })),
        Case("RMSNorm", (8, 512, 768), (768,), _with_unfused(_rms_impls()), has_bias=False),
    ]


CASES = _cases()


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


@contextlib.contextmanager
def one_thread():
    """Run torch on the calling thread only, restoring the thread count after (a context manager or decorator).

    Together with ``clock="cpu"`` this times the work itself: the CPU time of
    one thread does not grow when other processes compete for the cores, as
    wall-clock time does.  The book's small experiments run this way too: their
    kernels are tiny, and keeping two threads in step costs more than the
    second core gives back (measured on the book's 2-core machine: several
    times slower, 15-20 times when other processes keep the cores busy); one
    fixed thread also keeps their results reproducible.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interleaved(fns: dict[str, Timer], repeats: int, warmup: int = 1, clock: str = "wall") -> dict[str, list[float]]:
    """Run each callable ``warmup`` times, then ``repeats`` rounds of one run each; seconds per run.

    ``clock="cpu"`` measures the calling thread's CPU time: with
    ``torch.set_num_threads(1)`` that is the work itself, unaffected by other
    processes competing for the cores (a busy machine slows wall-clock times).
    """
    now = CLOCKS[clock]
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = now()
            f()
            times[k].append(now() - t0)
    return times


def inputs(case: Case, seed: int = 0):
    """``(x, weight, bias, dy)`` for ``case``: random, seeded, the leaves requiring grad (bias None without one)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case.shape, generator=g).requires_grad_()
    w = (1 + 0.1 * torch.randn(case.param_shape, generator=g)).requires_grad_()
    b = (0.1 * torch.randn(case.param_shape, generator=g)).requires_grad_() if case.has_bias else None
    dy = torch.randn(case.shape, generator=g)
    return x, w, b, dy


def time_case(case: Case, repeats: int = 15, impls: tuple[str, ...] | None = None,
              clock: str = "wall") -> dict[str, dict[str, float]]:
    """Median milliseconds of ``fwd``, ``bwd`` and ``fwd+bwd`` for each implementation of ``case``.

    ``fwd`` records the autograd graph (a training forward); ``bwd`` times
    ``y.backward(dy)`` alone, the forward having run untimed just before.
    """
    x, w, b, dy = inputs(case)
    names = [k for k in case.impls if impls is None or k in impls]
    leaves = [t for t in (x, w, b) if t is not None]

    def clear():
        for t in leaves:
            t.grad = None

    def fwd(f):
        return lambda: f(x, w, b)

    def fb(f):
        def run():
            clear()
            f(x, w, b).backward(dy)
        return run

    bwd_times: dict[str, list[float]] = {k: [] for k in names}
    now = CLOCKS[clock]

    def bwd(k, f):
        def run():
            clear()
            y = f(x, w, b)
            t0 = now()
            y.backward(dy)
            bwd_times[k].append(now() - t0)
        return run

    out: dict[str, dict[str, float]] = {k: {} for k in names}
    t_f = interleaved({k: fwd(case.impls[k]) for k in names}, repeats, clock=clock)
    interleaved({k: bwd(k, case.impls[k]) for k in names}, repeats, clock=clock)
    t_fb = interleaved({k: fb(case.impls[k]) for k in names}, repeats, clock=clock)
    for k in names:
        warm = bwd_times[k][1:]  # the first run is the warm-up
        out[k]["fwd"] = 1e3 * statistics.median(t_f[k])
        out[k]["bwd"] = 1e3 * statistics.median(warm)
        out[k]["fwd+bwd"] = 1e3 * statistics.median(t_fb[k])
    return out


def kernel_table(repeats: int = 15, cases: list[Case] | None = None, clock: str = "wall") -> list[dict]:
    """One row per (op, pass): milliseconds per implementation and the ratios to native."""
    rows = []
    for case in cases or CASES:
        res = time_case(case, repeats, clock=clock)
        for pas in ("fwd", "bwd", "fwd+bwd"):
            row = {"op": case.name, "shape": "×".join(map(str, case.shape)), "pass": pas}
            for k, v in res.items():
                row[f"{k}_ms"] = v[pas]
            for k in res:
                if k != "native":
                    row[f"{k}/native"] = res[k][pas] / res["native"][pas]
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of :func:`kernel_table` rows."""
    cols = ["op", "shape", "pass", "native_ms", "normlib_ms", "unfused_ms", "autograd_ms",
            "normlib/native", "unfused/native", "autograd/native"]
    lines = ["  ".join(f"{c:>15s}" for c in cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:15.2f}" if isinstance(v, float) else f"{v!s:>15s}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def count_passes(fn: Callable[[], object], numel: int, log: list | None = None) -> dict[str, int]:
    """Count the passes over activation-sized memory the torch operations inside ``fn()`` make.

    Every ATen operation that runs (forward or backward, whatever calls it) is
    seen once; each activation-sized tensor (``numel`` elements) it takes as an
    input counts as one *read*, each one it returns (or writes through ``out=``)
    as one *write*.  Views (``reshape``, ``expand``, …) move no memory and are
    not counted.  Returns ``{"ops": …, "reads": …, "writes": …}`` where ``ops``
    counts the operations that touched an activation; ``log``, if given, receives
    ``(op name, reads, writes)`` for each of them.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    counts = {"ops": 0, "reads": 0, "writes": 0}

    def big(t) -> bool:
        return isinstance(t, torch.Tensor) and t.numel() == numel

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if getattr(func, "is_view", False):
                return out
            out_kw = kwargs.get("out")
            reads = sum(big(t) for t in tree_leaves((args, {k: v for k, v in kwargs.items() if k != "out"})))
            writes = sum(big(t) for t in tree_leaves(out))
            if reads or writes:
                counts["ops"] += 1
                counts["reads"] += reads
                counts["writes"] += writes if out_kw is None else max(writes, 1)
                if log is not None:
                    log.append((str(func), reads, writes))
            return out

    with _Counter():
        fn()
    return counts


_REDUCTIONS = ("mean", "sum", "linalg_vector_norm", "var", "var_mean", "std", "norm", "amax", "amin")


def count_reductions(fn, *args, **kwargs) -> tuple[object, dict[str, int]]:
    """Run ``fn(*args, **kwargs)`` and count the reduction kernels torch dispatches.

    Returns ``(result, counts)`` with ``counts`` mapping an ATen op name
    (``"mean"``, ``"linalg_vector_norm"``, …) to how many times it ran.  A
    reduction is one full pass over its input, so this counts the passes a
    normalization's statistics cost.  normlib runs in its whole-tensor form
    here (:func:`normlib.fused.disabled`), where each reduction is a kernel of
    its own; the fused kernel makes the same reductions inside one loop.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: dict[str, int] = {}

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in _REDUCTIONS:
                counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with fused.disabled(), _Counter():
        out = fn(*args, **kwargs)
    return out, counts
