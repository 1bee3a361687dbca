"""The one statistics core under every normalization layer in normlib.

``normalize(x, S, eps)`` views ``x`` as :class:`~normlib.sets.StatSet` ``S`` says,
takes the biased mean and variance over S in two passes (mean first, then the
mean squared deviation: accurate in float32 even with a large offset, unlike
``E[x²] − E[x]²``), and returns

.. math::  \\hat x = (x - \\mu_S)\\, / \\sqrt{\\sigma^2_S + \\epsilon}

(and, given ``weight``/``bias``, the affine map ``y = γ x̂ + β`` fused into the
same call).  For tensors that need gradients the same forward runs inside one
autograd ``Function`` whose backward is the analytic gradient of normalization
over S, for every S,

.. math::  \\frac{\\partial L}{\\partial x} = \\frac{1}{\\sigma}\\Big(g - \\operatorname{mean}_S(g)
           - \\hat x\\, \\operatorname{mean}_S(g\\, \\hat x)\\Big),\\qquad g = \\gamma\\,\\frac{\\partial L}{\\partial y},

with :math:`\\partial L/\\partial\\gamma = \\sum \\hat x\\,\\partial L/\\partial y` and
:math:`\\partial L/\\partial\\beta = \\sum \\partial L/\\partial y` over the axes γ is
broadcast along.

How the code is organised
-------------------------
The formulas are written **once**, in :func:`_forward` and :func:`_backward`,
against a handful of primitives (mean over axes, mean of squares, a
multiply-add, a weighted sum over axes).  Two small backends implement the
primitives:

* :class:`_ArrayAPIOps` in plain array-API terms (``array_api_compat``): a NumPy
  array in gives NumPy out, for worked numbers a reader can check by hand;
* :class:`_TorchOps`, the same primitives with the fast torch forms: each of
  the forward and the backward writes one fresh activation-sized array and
  updates it in place from then on (on a CPU an update in place costs about
  half as much as writing a fresh array), ``torch.linalg.vector_norm`` for the
  sum of squares (no squared temporary) and matrix-vector products for sums,
  weighted or not, along a contiguous block of memory.

Counting passes over memory (one pass reads or writes one activation-sized
array; :func:`normbook.timing.count_passes` counts them), this whole-tensor
forward is five or six operations: mean, ``d = x − μ`` (the fresh array),
``Σd²``, then ``d·r·γ + β`` in place.  The backward takes ``Σ dy`` and
``Σ dy·x`` (the product is its fresh array) and writes ``dx`` into that array
as ``a·dy + b·x + c``, with ``a``, ``b``, ``c`` constant over each set.  The
autograd Function saves the input and the statistics, as PyTorch's native
kernels do, and no activation of its own.

PyTorch's native kernels make one pass instead, finishing each set while it
sits in the cache.  :mod:`normlib.fused` does the same arithmetic that way in
C, for every S made of contiguous blocks (Batch, Layer, Instance, Group Norm,
RMSNorm); the torch path here calls it wherever it applies and is the
reference it is tested against.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
import torch

from . import fused
from .sets import StatSet

__all__ = ["Moments", "moments", "normalize", "normalize_backward", "Grads"]

Array = Any  # a NumPy array or a torch tensor


class Moments(NamedTuple):
    """Biased statistics over S, kept in the viewed shape (reduced axes of size 1)."""

    mean: Array
    var: Array
    count: int  # |S|, the number of entries each statistic is taken over


class Grads(NamedTuple):
    """Gradients returned by :func:`_backward`: input (viewed shape), weight and bias (viewed, or None)."""

    x: Array
    weight: Array | None
    bias: Array | None


def _compute_dtype(xp, x):
    # Half precision accumulates badly: compute in float32 and cast back, as
    # PyTorch's CPU kernels and flax do.
    if x.dtype in (getattr(xp, "float16", None), getattr(torch, "bfloat16", None)):
        return xp.float32
    return x.dtype


# ---------------------------------------------------------------------------
# Primitives: the only place the two backends differ.
# ---------------------------------------------------------------------------
class _ArrayAPIOps:
    """Reference primitives in array-API terms (NumPy and anything array_api_compat wraps).

    Every method returns a new array; none writes into its arguments.
    """

    def __init__(self, xp):
        self.xp = xp

    def mean(self, a, axes):
        return self.xp.mean(a, axis=axes, keepdims=True)

    def mean_square(self, d, axes, count):
        """``mean_S(d²)`` (``count`` = |S|)."""
        return self.xp.mean(d * d, axis=axes, keepdims=True)

    def sub(self, a, b):
        """``a − b``, a fresh array the caller owns."""
        return a - b

    def rsqrt(self, v, eps):
        return 1.0 / self.xp.sqrt(v + eps)

    def mul(self, a, b):
        return a * b

    def scale_shift_(self, a, scales, shift):
        """``a · s₁ · s₂ ⋯ + shift`` (``shift`` may be None); may overwrite ``a`` (only arrays the core allocated)."""
        for s in scales:
            a = a * s
        return a if shift is None else a + shift

    def sum(self, a, axes):
        return self.xp.sum(a, axis=axes, keepdims=True) if axes else a

    def wsum(self, a, w, axes):
        """``Σ_axes a·w`` with ``w`` broadcast against ``a`` (``w=None`` means 1)."""
        return self.sum(a if w is None else a * w, axes)

    def combine_(self, buf, dy, a_scales, x, bx, c, out_scale):
        """``(dy · a₁ · a₂ ⋯ + bx · x + c) · out_scale`` (``c``, ``out_scale`` may be None), written into ``buf``."""
        out = dy
        for s in a_scales:
            out = out * s
        out = out + bx * x
        if c is not None:
            out = out + c
        return out if out_scale is None else out * out_scale


def _split_trailing(axes, ndim):
    """Split sorted ``axes`` into the block of trailing axes (``…, ndim-2, ndim-1``) and the rest."""
    tail = []
    for a in reversed(axes):
        if a == ndim - 1 - len(tail):
            tail.append(a)
        else:
            break
    tail = tuple(reversed(tail))
    return tail, tuple(a for a in axes if a not in tail)


class _TorchOps(_ArrayAPIOps):
    """The same primitives with torch's fast forms (same arithmetic).

    On a CPU, writing a fresh activation-sized array costs about twice an
    update in place, and every fresh array the allocator has to map costs page
    faults on top; so each of the forward and the backward allocates one such
    array and updates it in place from then on.  Sums along a contiguous block
    of memory, weighted or not, are matrix-vector products (one pass, no
    temporary).
    """

    def __init__(self):
        super().__init__(array_api_compat.array_namespace(torch.empty(0)))

    def mean(self, a, axes):
        return a.mean(dim=axes, keepdim=True)

    def mean_square(self, d, axes, count):
        # one reduction pass, no d² temporary; over the trailing (contiguous) axes
        # of S first: vector_norm is slow across strided axes
        tail, head = _split_trailing(axes, d.ndim)
        ss = torch.linalg.vector_norm(d, 2, dim=tail or axes, keepdim=True).square()
        if tail and head:
            ss = ss.sum(dim=head, keepdim=True)
        return ss.div_(count)

    def sub(self, a, b):
        return torch.sub(a, b)

    def rsqrt(self, v, eps):
        return torch.rsqrt(v + eps)

    def scale_shift_(self, a, scales, shift):
        if any(fused.transformed(t) for t in (a, *scales, shift) if t is not None):
            # inside torch.func.vmap a batched γ or β cannot update an unbatched array in place
            return super().scale_shift_(a, scales, shift)
        for s in scales:
            a.mul_(s)
        return a if shift is None else a.add_(shift)

    def sum(self, a, axes):
        return self.wsum(a, None, axes)

    def wsum(self, a, w, axes):
        if not axes:
            return a if w is None else a * w
        if w is not None:
            ones = tuple(ax for ax in axes if w.shape[ax] == 1)
            if ones:  # w is constant along these: reduce a first (now small), then weight
                return self.wsum(a.sum(dim=ones, keepdim=True), w, tuple(ax for ax in axes if ax not in ones))
        k, nd = len(axes), a.ndim
        varies = set() if w is None else {i for i in range(nd) if w.shape[i] != 1}  # axes where w varies
        if a.is_contiguous() and nd > k:
            if axes == tuple(range(k)) and varies <= set(axes):
                # Σ over the leading block = (weights as a row vector) @ (a as a matrix)
                rows = math.prod(a.shape[:k])
                v = (torch.ones(rows, dtype=a.dtype, device=a.device) if w is None
                     else w.expand(tuple(a.shape[:k]) + (1,) * (nd - k)).reshape(rows))
                return (v @ a.reshape(rows, -1)).reshape((1,) * k + tuple(a.shape[k:]))
            if axes == tuple(range(nd - k, nd)) and varies <= set(axes):
                # Σ over the trailing block = (a as a matrix) @ (weights as a column vector)
                cols = math.prod(a.shape[nd - k:])
                if w is None:
                    return a.sum(dim=axes, keepdim=True)
                v = w.expand((1,) * (nd - k) + tuple(a.shape[nd - k:])).reshape(cols)
                return (a.reshape(-1, cols) @ v).reshape(tuple(a.shape[:nd - k]) + (1,) * k)
        return (a if w is None else a * w).sum(dim=axes, keepdim=True)

    def combine_(self, buf, dy, a_scales, x, bx, c, out_scale):
        # one write into buf, then updates in place (a fused addcmul with a
        # broadcast first argument is slower on a CPU than the two steps)
        if fused.transformed(buf):  # inside torch.func: vmap has no rules for out= and addcmul_
            return super().combine_(buf, dy, a_scales, x, bx, c, out_scale)
        out = torch.mul(dy, a_scales[0], out=buf)
        for s in a_scales[1:]:
            out.mul_(s)
        out.addcmul_(x, bx)
        if c is not None:
            out.add_(c)
        return out if out_scale is None else out.mul_(out_scale)


_TORCH = _TorchOps()


_TORCH_XP = array_api_compat.array_namespace(torch.empty(0))
_NUMPY_XP = array_api_compat.array_namespace(np.empty(0))


def _namespace(x):
    """The array namespace of ``x``; the two normlib serves are looked up once, not per call."""
    if isinstance(x, torch.Tensor):
        return _TORCH_XP
    if isinstance(x, np.ndarray):
        return _NUMPY_XP
    return array_api_compat.array_namespace(x)


def _ops(x):
    if isinstance(x, torch.Tensor):
        return _TORCH
    return _ArrayAPIOps(_namespace(x))


def _scales(r, w, like):
    """The factors ``r`` and ``w`` to multiply an activation by: their product when that is small.

    Batch, Instance and Group Norm: ``r·w`` has one number per (sample, channel)
    at most, so it is one factor.  Layer Norm: ``r`` runs along the rows and
    ``w`` along the columns, so ``r·w`` would be activation-sized; keep two.
    """
    if w is None:
        return [r]
    shape = [max(a, b) for a, b in zip(r.shape, w.shape)]
    return [r * w] if 8 * math.prod(shape) <= math.prod(like.shape) else [r, w]


# ---------------------------------------------------------------------------
# The arithmetic, written once.
# ---------------------------------------------------------------------------
def _forward(ops, xv, axes, count, eps, w=None, b=None, center=True):
    """Normalize the viewed input over ``axes``; return ``(y, mean, var, rstd)``.

    ``y = (x − μ)·r·γ + β`` with ``r = (σ² + ε)^(-1/2)``; ``mean`` is ``None``
    when ``center`` is false (RMS normalization: divide by
    ``sqrt(mean_S(x²) + eps)``, no mean subtracted).  One activation-sized
    array is written, the deviation ``x − μ``; the output overwrites it.
    """
    if center:
        mean = ops.mean(xv, axes)  # pass 1
        d = ops.sub(xv, mean)  # the deviation: the one fresh array
        var = ops.mean_square(d, axes, count)  # pass 2: never E[x²] − E[x]²
    else:
        mean, d = None, None
        var = ops.mean_square(xv, axes, count)
    rstd = ops.rsqrt(var, eps)
    scales = _scales(rstd, w, xv)
    if d is None:  # RMS: the input is not ours to overwrite
        d, scales = ops.mul(xv, scales[0]), scales[1:]
    return ops.scale_shift_(d, scales, b), mean, var, rstd


def _backward(ops, dy, z, shift, q, rstd, axes, count, w=None, w_axes=None, b_axes=None, center=True):
    """Analytic gradients of ``y = γ·x̂ + β``, given ``x̂ = (z − shift)·q``, with respect to ``x``, ``γ``, ``β``.

    ``r = rstd`` is ``1/sqrt(σ²_S + ε)``.  The autograd Function passes the
    input itself (``z = x``, ``shift = μ``, ``q = r``), as native kernels do,
    so the forward keeps no activation of its own for the backward.  With
    ``g = γ·dy`` and ``M = |S|``::

        dx = r · ((g − mean_S(g)) − x̂ · mean_S(g·x̂))    (no mean_S(g) term if not centred)
        dγ = Σ_P dy·x̂,   dβ = Σ_Q dy                      (P, Q = the axes γ, β are broadcast along)

    Every mean over S comes from two sums, ``Σ dy`` and ``Σ dy·z``, taken
    first over the axes of S along which γ is constant (all of S for Batch and
    Instance Norm; the positions for Group Norm; none for Layer Norm) and then,
    weighted by γ, over the rest; the first sums also give dγ and dβ where
    their axes include those of S.  Expanding ``x̂`` makes ``dx`` one affine
    map per set, written in one pass::

        dx = (r·γ)·dy + b·z + c,   b = −r·q·mean_S(g·x̂),   c = −b·shift − r·mean_S(g)

    All arrays are in the viewed shape; ``w_axes``/``b_axes`` are ``None``
    when that gradient is not wanted.
    """
    const = tuple(a for a in axes if w is None or w.shape[a] == 1)  # axes of S along which γ is constant
    rest = tuple(a for a in axes if a not in const)
    p = ops.mul(dy, z)  # dy·z: the one fresh activation-sized array
    s_dz = ops.sum(p, const)
    s_dy = ops.sum(dy, const) if (center or b_axes is not None) else None
    mean_g = ops.wsum(s_dy, w, rest) / count if center else None  # mean_S(g)
    mean_gz = ops.wsum(s_dz, w, rest) / count  # mean_S(g·z)
    mean_gx = q * (mean_gz if shift is None else mean_gz - shift * mean_g)  # mean_S(g·x̂)
    gw = gb = None
    if w_axes is not None:  # Σ_P dy·x̂ = Σ_P q·(dy·z − shift·dy)
        if const and set(const) <= set(w_axes):  # from the sums already taken
            t = s_dz if shift is None else s_dz - shift * s_dy
            gw = ops.sum(q * t, tuple(a for a in w_axes if a not in const))
        else:
            gw = ops.wsum(p, q, w_axes)
            if shift is not None:
                gw = gw - ops.wsum(dy, q * shift, w_axes)
    if b_axes is not None:
        gb = (ops.sum(s_dy, tuple(a for a in b_axes if a not in const)) if set(const) <= set(b_axes)
              else ops.sum(dy, b_axes))
    bx = -(q * mean_gx)  # times r below
    c = None
    if shift is not None:
        c = -bx * shift
    if center:
        c = -mean_g if c is None else c - mean_g
    scales = _scales(rstd, w, dy)
    if len(scales) == 1:  # dx = (r·γ)·dy + (r·bx)·z + r·c
        dx = ops.combine_(p, dy, scales, z, rstd * bx, None if c is None else rstd * c, None)
    else:  # r·γ is activation-sized: dx = (γ·dy + bx·z + c)·r
        dx = ops.combine_(p, dy, scales[1:], z, bx, c, rstd)
    return Grads(dx, gw, gb)


def normalize_backward(grad_xhat: Array, x_hat: Array, rstd: Array, axes: tuple[int, ...]) -> Array:
    """Analytic gradient of ``x_hat = (x - mean_S) * rstd`` with respect to ``x``.

    All arrays in the viewed shape; ``axes`` are the axes of S; works for NumPy
    arrays and torch tensors alike.  Returns
    ``rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` with ``g = grad_xhat``
    (the call :func:`_backward` makes with no affine parameters, given ``x̂``
    itself: ``z = x̂``, no shift, ``q = 1``).
    """
    axes = tuple(axes)
    shape = tuple(grad_xhat.shape)
    count = math.prod(shape[a] for a in axes)
    return _backward(_ops(grad_xhat), grad_xhat, x_hat, None, 1.0, rstd, axes, count).x


# ---------------------------------------------------------------------------
# Shapes: the view S asks for, and the parameters in that view.
# ---------------------------------------------------------------------------
def _view(x: Array, S: StatSet):
    xp = _namespace(x)
    shape = tuple(x.shape)
    xv = xp.reshape(x, S.view_shape(shape))
    cdt = _compute_dtype(xp, xv)
    if xv.dtype != cdt:
        xv = xp.astype(xv, cdt)
    return xv, S.reduce_axes(shape), S.set_size(shape)


def _param_view(p: Array | None, shape: tuple[int, ...], S: StatSet, dtype) -> Array | None:
    """Reshape a parameter broadcastable to ``shape`` into the viewed shape of S.

    Only Group Norm's view changes the axes: its channel axis C becomes (G, C/G).
    """
    if p is None:
        return None
    xp = _namespace(p)
    ndim = len(shape)
    pshape = (1,) * (ndim - p.ndim) + tuple(p.shape)
    if p.ndim > ndim or any(s not in (1, t) for s, t in zip(pshape, shape)):
        raise ValueError(
            f"normalize: a parameter of shape {list(p.shape)} does not broadcast "
            f"against input of shape {list(shape)}"
        )
    view = pshape
    if S.groups is not None:
        G = S.groups
        c = pshape[1]
        split = (G, c // G) if c != 1 else (1, 1)
        view = (pshape[0], *split, *pshape[2:])
    q = xp.reshape(p, view)
    if q.dtype != dtype:
        q = xp.astype(q, dtype)
    return q


def _param_axes(pv: Array, xv_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Axes along which a viewed parameter is broadcast (its gradient sums over them)."""
    return tuple(i for i, (s, t) in enumerate(zip(pv.shape, xv_shape)) if s == 1 and t != 1)


def _torch_forward(xv, wv, bv, axes, count, eps, center, lay):
    """``(y, mean, var)`` for torch tensors: the fused kernel for layout ``lay``, or :func:`_forward` if None."""
    if lay is not None:
        stat_shape = tuple(1 if i in axes else s for i, s in enumerate(xv.shape))
        return fused.forward(xv, wv, bv, lay, eps, center, stat_shape)
    y, mean, var, _ = _forward(_TORCH, xv, axes, count, eps, wv, bv, center)
    return y, (mean if mean is not None else torch.zeros_like(var)), var


# ---------------------------------------------------------------------------
# The autograd Function: one for every S, with the affine map fused.
# ---------------------------------------------------------------------------
def _save(ctx, xv, wv, bv, axes, count, eps, center, mean, var, lay) -> None:
    """What the backward needs: the input, μ, σ² and γ (as native kernels save), and the shapes."""
    ctx.axes, ctx.count, ctx.eps, ctx.center, ctx.layout = axes, count, eps, center, lay
    ctx.b_axes = None if bv is None else _param_axes(bv, tuple(xv.shape))
    ctx.b_shape = None if bv is None else tuple(bv.shape)
    ctx.save_for_backward(xv, mean, var, wv)
    ctx.mark_non_differentiable(mean, var)


def _grads(ctx, dy):
    """The backward of both Functions: the fused kernel where the forward used it, else :func:`_backward`."""
    xv, mean, var, wv = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    none = (None,) * 4  # axes, count, eps, center
    if not (need_x or need_w or need_b):
        return (None, None, None, *none)
    rstd = _TORCH.rsqrt(var, ctx.eps)  # the forward's own arithmetic: the same numbers
    if ctx.layout is not None and dy.dtype == xv.dtype:
        dx, dw, db = fused.backward(dy, xv, mean, rstd, wv, ctx.layout, ctx.center, need_w, need_b)
        dw = None if dw is None else dw.reshape(wv.shape)
        db = None if db is None else db.reshape(ctx.b_shape)
        return ((dx if need_x else None), dw, db, *none)
    w_axes = _param_axes(wv, tuple(xv.shape)) if need_w else None
    b_axes = ctx.b_axes if need_b else None
    shift = mean if ctx.center else None
    g = _backward(_TORCH, dy, xv, shift, rstd, rstd, ctx.axes, ctx.count, wv, w_axes, b_axes, ctx.center)
    return ((g.x if need_x else None), g.weight, g.bias, *none)


class _NormalizeFunction(torch.autograd.Function):
    """Forward :func:`_forward` (or the fused kernel), backward :func:`_backward` (the analytic gradient).

    Works on the viewed input and parameters in the compute dtype (the
    reshapes and casts around it are ordinary autograd operations).  Saves
    the input, μ, σ² and γ, as PyTorch's native kernels do: no activation of
    its own.
    """

    @staticmethod
    def forward(ctx, xv, wv, bv, axes, count, eps, center):  # type: ignore[override]
        lay = fused.layout(xv, axes, wv, bv)
        y, mean, var = _torch_forward(xv, wv, bv, axes, count, eps, center, lay)
        _save(ctx, xv, wv, bv, axes, count, eps, center, mean, var, lay)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _grad_mean, _grad_var):  # type: ignore[override]
        return _grads(ctx, dy)


class _TransformableNormalizeFunction(torch.autograd.Function):
    """The same Function in the ``setup_context`` form, which ``torch.func`` (``grad``, ``vmap``) needs.

    Used only inside those transforms: ``Function.apply`` inspects the
    signature of a ``setup_context`` Function on every call, a fixed cost of
    tens of microseconds that the plain form does not pay.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(xv, wv, bv, axes, count, eps, center):  # type: ignore[override]
        return _torch_forward(xv, wv, bv, axes, count, eps, center, None)  # no fused kernel in a transform

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, mean, var = output
        _save(ctx, *inputs, mean, var, None)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _grad_mean, _grad_var):  # type: ignore[override]
        return _grads(ctx, dy)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def moments(x: Array, S: StatSet) -> Moments:
    """Two-pass biased mean and variance of ``x`` over the set ``S``.

    Shapes: ``x`` is ``(N, C, *spatial)`` (or any shape for Layer Norm);
    ``mean`` and ``var`` have ``S.view_shape(x.shape)`` with the axes of S of
    size 1.
    """
    xv, axes, count = _view(x, S)
    ops = _ops(x)
    mean = ops.mean(xv, axes)
    var = ops.mean_square(ops.sub(xv, mean), axes, count)
    return Moments(mean, var, count)


def normalize(
    x: Array,
    S: StatSet,
    eps: float,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    center: bool = True,
) -> tuple[Array, Moments]:
    """Normalize ``x`` over the set ``S``: ``(x - mean_S) / sqrt(var_S + eps)``, then ``· weight + bias``.

    Returns ``(y, Moments(mean, var, count))``: ``y`` has the shape and dtype of
    ``x``; ``mean`` and ``var`` are the biased statistics in the viewed shape,
    without gradient.  ``weight`` and ``bias`` (optional) broadcast against
    ``x`` as in ``y = x_hat * weight + bias`` (e.g. ``(1, C, 1, 1)`` per
    channel, ``normalized_shape`` for Layer Norm); fusing them here lets the
    backward compute their gradients in the same passes.  ``center=False``
    divides by the root mean square instead (RMSNorm: no mean subtracted; the
    returned ``mean`` is then zeros and ``var`` is ``mean_S(x²)``).

    NumPy in gives NumPy out; a tensor that requires grad (input or parameter)
    goes through the analytic backward.

    Raises ``ValueError`` if a parameter does not broadcast against ``x``.

    >>> import numpy as np
    >>> from normlib.sets import instance_set
    >>> y, m = normalize(np.array([[[2.0, 3.0]]]), instance_set(), 1e-5)
    >>> np.round(y, 3).tolist(), float(m.mean.item()), float(m.var.item())
    ([[[-1.0, 1.0]]], 2.5, 0.25)
    """
    shape = tuple(x.shape)
    xv, axes, count = _view(x, S)
    wv = _param_view(weight, shape, S, xv.dtype)
    bv = _param_view(bias, shape, S, xv.dtype)
    if isinstance(x, torch.Tensor) and torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, weight, bias)
    ):
        in_transform = any(isinstance(t, torch.Tensor) and fused.transformed(t) for t in (xv, wv, bv))
        fn = _TransformableNormalizeFunction if in_transform else _NormalizeFunction
        y, mean, var = fn.apply(xv, wv, bv, axes, count, eps, center)
    elif isinstance(x, torch.Tensor):
        y, mean, var = _torch_forward(xv, wv, bv, axes, count, eps, center, fused.layout(xv, axes, wv, bv))
    else:
        ops = _ops(x)
        y, mean, var, _ = _forward(ops, xv, axes, count, eps, wv, bv, center)
        if mean is None:
            mean = ops.xp.zeros_like(var)
    xp = _namespace(x)
    y = xp.reshape(y, shape)
    if y.dtype != x.dtype:
        y = xp.astype(y, x.dtype)
    return y, Moments(mean, var, count)
