"""Fused CPU kernels: one loop per set S, as PyTorch's native kernels do it.

:mod:`normlib.core` writes normalization as whole-tensor operations; each is a
pass over the activation, and "How fast is normlib?" counts five in the
forward.  PyTorch's native kernels instead finish one set while it sits in
the processor's cache.  ``csrc/fused.c`` does the same arithmetic that way:
the forward reads ``x`` once and writes ``y`` once, the backward reads ``dy``
and ``x`` once and writes ``dx`` once.  This module knows only the kernels:
the core asks :func:`layout` whether they apply and runs them through a
:class:`Kernel`; both paths give the numbers of :mod:`normlib.reference` up to
rounding (``tests/normlib/test_fused.py``, ``test_reference.py``).

The C file is compiled on first use with the system C compiler (``cc``, or
``$CC``) into ``$XDG_CACHE_HOME/normlib`` (default ``~/.cache/normlib``), keyed
by a hash of the source, the flags and the processor, and loaded with
:mod:`ctypes`; the two kernels are registered as torch operators
(``normlib::fused_norm_forward`` and ``…_backward``) so profilers and
:func:`normbook.timing.count_passes` see them.  :func:`layout` returns
``None``, and the core uses its whole-tensor path, where the kernels do not
apply: no compiler, a GPU tensor or half precision (computed in float32 after
the cast, so that does apply), a set that is not made of contiguous blocks, a
``torch.func`` transform, ``NORMLIB_FUSED=0`` in the environment, or inside
:func:`disabled`.  :data:`status` says whether the kernels are on, or why not.

Layout: the viewed input is read as ``(B, R, G, K, L)`` in memory.  A set is
one ``(r, g)``: ``B`` blocks of ``M = K·L`` contiguous entries.  γ and β are a
``(G, K)`` table, constant along ``L``.  Batch Norm is ``B = N, R = 1, G = C,
K = 1, L = H·W``; Layer Norm ``B = 1, R`` = rows, ``G = 1, K = |S|, L = 1``;
Group Norm ``B = 1, R = N, G, K = C/G, L = H·W``; Instance Norm ``B = 1, R =
N, G = C, K = 1, L = H·W``.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch._subclasses.fake_tensor import is_fake

from . import kernel_cache

__all__ = ["Layout", "Kernel", "layout", "shape_layout", "usable", "available", "disabled", "status"]

_SOURCE = Path(__file__).with_name("csrc") / "fused.c"
_HEADER = _SOURCE.with_name("fused_body.h")
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
if platform.machine() in ("x86_64", "AMD64"):
    _FLAGS.append("-mprefer-vector-width=512")  # where AVX-512 exists, gcc otherwise keeps to 256 bits
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}

status = "not loaded yet"
_lib = None
_off = False  # set by disabled()


class Layout(NamedTuple):
    """Sizes of the ``(B, R, G, K, L)`` reading of the viewed input (see the module docstring)."""

    R: int
    B: int
    G: int
    K: int
    L: int


def _build() -> ctypes.CDLL:
    names = [f"norm_{d}_{suf}" for suf in _DTYPES.values() for d in ("forward", "backward")]
    # the cache checks that the library loads and exports every kernel before it keeps it
    cdll = kernel_cache.compile_and_load(_SOURCE, [_HEADER], _FLAGS, symbols=names)
    P, I64, D, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suf in _DTYPES.values():
        f = getattr(cdll, f"norm_forward_{suf}")
        f.argtypes = [P, P, P, P, P, P, I64, I64, I64, I64, I64, D, INT, INT]
        f.restype = None
        b = getattr(cdll, f"norm_backward_{suf}")
        b.argtypes = [P, P, P, P, P, P, P, P, I64, I64, I64, I64, I64, INT, INT]
        b.restype = INT
    return cdll


def _load():
    global _lib, status
    if _lib is not None or status != "not loaded yet":
        return _lib
    if os.environ.get("NORMLIB_FUSED", "1") == "0":
        status = "off: NORMLIB_FUSED=0"
        return None
    try:
        _lib = _build()
        status = "on"
    # the kernels are an optimization: whatever stops them (no compiler, no usable cache
    # folder, a library that fails the load check), the whole-tensor path runs instead
    except (OSError, subprocess.SubprocessError, kernel_cache.KernelBuildError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        status = f"off: could not build {_SOURCE.name}: {detail.strip()[:300]}"
        warnings.warn(f"normlib.fused: {status}; using the slower whole-tensor path", RuntimeWarning, stacklevel=3)
    return _lib


def available() -> bool:
    """True when the kernels are compiled and loaded (building them on the first call)."""
    return _load() is not None


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _without_storage(t: torch.Tensor) -> bool:
    # torch.func wraps tensors; torch.compile, torch.export and FakeTensorMode
    # see tensors without data: the kernels need real memory
    if torch.compiler.is_compiling():
        return True
    if type(t) in _PLAIN:  # the common case, decided without the slower checks below
        return torch._C._functorch.is_functorch_wrapped_tensor(t)
    return torch._C._functorch.is_functorch_wrapped_tensor(t) or is_fake(t)


def usable(xv, *params) -> bool:
    """True when the kernels can run on these tensors: what :func:`shape_layout` does not see.

    ``xv`` must be a contiguous, non-empty CPU tensor of float32 or float64
    with real memory (not inside ``torch.func``, ``torch.compile`` or fake
    tensors), the parameters (or ``None``) of the same dtype and device, the
    kernels built, and not switched off (:func:`disabled`, ``NORMLIB_FUSED=0``).
    """
    if _off or not isinstance(xv, torch.Tensor) or xv.device.type != "cpu" or xv.dtype not in _DTYPES:
        return False
    if not xv.is_contiguous() or xv.numel() == 0 or _without_storage(xv):
        return False
    for p in params:
        if p is not None and (not isinstance(p, torch.Tensor) or p.dtype != xv.dtype
                              or p.device != xv.device or _without_storage(p)):
            return False
    return _lib is not None or available()


def layout(xv, axes: tuple[int, ...], wv=None, bv=None) -> Layout | None:
    """The :class:`Layout` when the fused kernels can take this call, else ``None``.

    :func:`usable` on the tensors, then :func:`shape_layout` on their shapes
    (parameters with fewer dimensions than ``xv`` are aligned on the trailing
    axes, as broadcasting does).
    """
    if not axes or not usable(xv, wv, bv):
        return None
    nd = xv.ndim
    if any(p is not None and p.ndim > nd for p in (wv, bv)):
        return None

    def padded(p):  # broadcasting aligns trailing axes: a parameter may have fewer
        return None if p is None else (1,) * (nd - p.ndim) + tuple(p.shape)

    return shape_layout(tuple(xv.shape), tuple(axes), padded(wv), padded(bv))


def shape_layout(shape, axes, wshape, bshape) -> Layout | None:
    """The :class:`Layout` of a viewed input of ``shape`` with S on ``axes`` and parameters of ``wshape``/``bshape``
    (as many dimensions as ``shape``, or ``None``), or ``None`` when the sets are not contiguous blocks or a
    parameter is not one ``(G, K)`` table.

    S must be a trailing block of axes, plus perhaps the batch axis 0 (Batch
    Norm: ``B`` = N blocks per set).  Along the axes between the batch axis and
    S a parameter may vary only on a trailing block (the groups ``G``), inside S
    only on a leading block (``K``), and it must be constant along the rest
    (``L``) and along the batch axis.  Batch Norm whose blocks are shorter
    than 8 entries (``(N, C)`` input: single numbers) is left to the
    whole-tensor path when the input has more than 4096 entries: there the
    kernel's strided reads cost more than that path's extra passes; on a
    smaller input the kernel's lower fixed cost per call wins.
    """
    if not axes:
        return None
    nd = len(shape)
    batch_in = axes[0] == 0
    inner = axes[1:] if batch_in else axes
    a0 = inner[0] if inner else nd
    first = 1 if batch_in else 0  # the first axis that indexes sets
    if inner != tuple(range(a0, nd)) or (batch_in and math.prod(shape[a0:]) < 8 and math.prod(shape) > 4096):
        return None  # not contiguous blocks (or short blocks of a large input: see above)
    g0 = k1 = a0
    for is_bias, pshape in enumerate((wshape, bshape)):
        if pshape is None:
            continue
        varies = [pshape[i] != 1 and shape[i] != 1 for i in range(nd)]
        lead = [i for i in range(first, a0) if varies[i]]
        within = [i for i in range(a0, nd) if varies[i]]
        pg0 = lead[0] if lead else a0  # G = axes pg0 .. a0-1, K = axes a0 .. pk1-1
        pk1 = within[-1] + 1 if within else a0
        if (batch_in and varies[0]) or any(shape[i] != 1 and not varies[i] for i in (*range(pg0, a0), *range(a0, pk1))):
            return None  # not one (G, K) table
        if is_bias and wshape is not None and (pg0, pk1) != (g0, k1):
            return None  # weight and bias tabulated differently
        g0, k1 = pg0, pk1
    return Layout(math.prod(shape[first:g0]), shape[0] if batch_in else 1, math.prod(shape[g0:a0]),
                  math.prod(shape[a0:k1]), math.prod(shape[k1:]))


def _ptr(t):
    return None if t is None else t.data_ptr()


# The kernels are registered as torch operators, so that the dispatcher sees
# them like any ATen kernel: profilers name them, and
# normbook.timing.count_passes counts their reads and writes.
def _forward_impl(x: torch.Tensor, w: Optional[torch.Tensor], b: Optional[torch.Tensor], R: int, B: int, G: int,
                K: int, L: int, eps: float, center: bool,
                stat_shape: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y = torch.empty_like(x)
    mean = torch.empty(stat_shape, dtype=x.dtype, device=x.device)
    var = torch.empty(stat_shape, dtype=x.dtype, device=x.device)
    getattr(_lib, f"norm_forward_{_DTYPES[x.dtype]}")(
        x.data_ptr(), _ptr(w), _ptr(b), y.data_ptr(), mean.data_ptr(), var.data_ptr(),
        R, B, G, K, L, eps, int(center), torch.get_num_threads())
    return y, mean, var


def _backward_impl(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, w: Optional[torch.Tensor],
                 R: int, B: int, G: int, K: int, L: int, center: bool, need_w: bool,
                 need_b: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx = torch.empty_like(x)
    dw = torch.empty(G * K if need_w else 0, dtype=x.dtype, device=x.device)
    db = torch.empty(G * K if need_b else 0, dtype=x.dtype, device=x.device)
    err = getattr(_lib, f"norm_backward_{_DTYPES[x.dtype]}")(
        dy.data_ptr(), x.data_ptr(), mean.data_ptr(), rstd.data_ptr(), _ptr(w), dx.data_ptr(),
        dw.data_ptr() if need_w else None, db.data_ptr() if need_b else None,
        R, B, G, K, L, int(center), torch.get_num_threads())
    if err:
        raise MemoryError(f"fused_norm_backward: no memory for {2 * G * K} partial sums per thread")
    return dx, dw, db


_forward_op = torch.library.custom_op("normlib::fused_norm_forward", _forward_impl, mutates_args=())
_backward_op = torch.library.custom_op("normlib::fused_norm_backward", _backward_impl, mutates_args=())


@_forward_op.register_fake
def _(x, w, b, R, B, G, K, L, eps, center, stat_shape):
    return torch.empty_like(x), x.new_empty(stat_shape), x.new_empty(stat_shape)


@_backward_op.register_fake
def _(dy, x, mean, rstd, w, R, B, G, K, L, center, need_w, need_b):
    return torch.empty_like(x), x.new_empty(G * K if need_w else 0), x.new_empty(G * K if need_b else 0)


def _through_dispatcher() -> bool:
    # Under a TorchDispatchMode (fake tensors, functionalization, a pass or FLOP
    # counter) or the profiler, the kernels must run as the registered
    # operators: a mode may stand in for the tensors, and the profiler records
    # only what the dispatcher runs.  Otherwise the Python function behind the
    # operator is called directly: the dispatcher's round trip costs more than
    # the whole kernel on a small input (about 20 µs a call).
    return torch._C._len_torch_dispatch_stack() > 0 or torch.autograd._profiler_enabled()


def _table(p):
    # the kernels read a parameter as a contiguous (G, K) table: any shape with that memory will do
    return p if p is None or p.is_contiguous() else p.contiguous()


class Kernel(NamedTuple):
    """The C kernels for one :class:`Layout`: the interface :mod:`normlib.core` runs every kernel through.

    ``axes`` are the axes of S in the viewed input, ``stat_shape`` the shape of
    its statistics (the view with the axes of S of size 1).
    """

    layout: Layout
    axes: tuple[int, ...]
    stat_shape: tuple[int, ...]

    def forward(self, x, weight, bias, eps: float, center: bool):
        """``(y, mean, var, saved)``: ``y`` of ``x``'s shape, the statistics of ``stat_shape``, and what
        :meth:`backward` takes besides ``x`` and ``mean`` (here the variance itself).  The tensors may
        have the caller's shapes or the view's: the kernel reads their memory."""
        w, b = _table(weight), _table(bias)
        op = _forward_op if _through_dispatcher() else _forward_impl
        y, mean, var = op(x, w, b, *self.layout, float(eps), bool(center), list(self.stat_shape))
        return y, mean, var, var  # the backward's own statistic is the variance

    def backward(self, dy, x, mean, var, weight, eps: float, center: bool, need_w: bool, bias_shape):
        """``(dx, dweight, dbias)``: ``dx`` of ``x``'s shape, ``dweight`` of ``weight``'s, ``dbias`` of
        ``bias_shape`` (``None`` when that gradient is not wanted)."""
        need_b = bias_shape is not None
        # rstd is 0 where var overflowed the dtype: the backward kernel then takes the set's variance again
        rstd = torch.rsqrt(var + eps)
        op = _backward_op if _through_dispatcher() else _backward_impl
        dx, dw, db = op(dy.contiguous(), x, mean, rstd, _table(weight), *self.layout,
                        bool(center), bool(need_w), need_b)
        return dx, (dw.view(weight.shape) if need_w else None), (db.view(bias_shape) if need_b else None)


@contextlib.contextmanager
def disabled():
    """Within this block the core uses its whole-tensor path everywhere (to count or time that path).

    The switch is process-wide, not per thread.
    """
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before
