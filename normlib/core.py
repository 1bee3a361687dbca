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
* :class:`_TorchOps`, the same primitives with the fast torch forms: fused
  multiply-adds (``torch.addcmul``), in-place updates of temporaries the core
  itself just allocated, ``torch.linalg.vector_norm`` for the sum of squares
  (one reduction, no squared temporary) and matrix-vector products for sums
  that run along a contiguous block of memory.

Counting passes over memory (one pass reads or writes one activation-sized
array; :func:`normlib.benchmark.count_passes` counts them), the torch forward
is five operations: mean (1 read), ``d = x − μ`` (1 read, 1 write), ``Σd²``
(1 read), ``x̂ = d·r`` in place (1 read, 1 write), affine (1 read, 1 write).
The backward is ``dy·x̂`` (2 reads, 1 write), the sums of ``dy`` and ``dy·x̂``
(plain sums, or matrix-vector products where S is a contiguous block), and
``dx``: one write into the ``dy·x̂`` buffer, then updates in place (on a CPU an
update in place costs far less than writing a fresh array).  ``x̂`` is saved
for the backward; nothing else of activation size is.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
import torch

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

    def scale_(self, a, s):
        """``a · s``; may overwrite ``a`` (only called on arrays the core allocated)."""
        return a * s

    def rsqrt(self, v, eps):
        return 1.0 / self.xp.sqrt(v + eps)

    def muladd(self, a, s, t):
        """``a · s + t`` (``s``, ``t`` broadcast; either may be ``None``)."""
        if s is not None:
            a = a * s
        if t is not None:
            a = a + t
        return a

    def mul(self, a, b):
        return a * b

    def sum(self, a, axes):
        return self.xp.sum(a, axis=axes, keepdims=True) if axes else a

    def wsum(self, a, w, axes):
        """``Σ_axes a·w`` with ``w`` broadcast against ``a`` (``w=None`` means 1)."""
        return self.sum(a if w is None else a * w, axes)

    def grad_input(self, dy, w, xhat, k, c1, c2, buf):
        """``k · ((w·dy − c1) − x̂·c2)`` (``w``, ``c1`` may be None); ``buf`` (or None) may be overwritten."""
        g = dy if w is None else dy * w
        if c1 is not None:
            g = g - c1
        return (g - xhat * c2) * k

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
    """The same primitives with torch's fused and in-place forms (same arithmetic)."""

    def __init__(self):
        super().__init__(array_api_compat.array_namespace(torch.empty(0)))

    def mean(self, a, axes):
        return a.mean(dim=axes, keepdim=True)

    def mean_square(self, d, axes, count):
        # one reduction pass, no d² temporary; over the trailing (contiguous) axes
        # of S first: vector_norm is slow across strided axes
        tail, head = _split_trailing(axes, d.ndim)
        ss = torch.linalg.vector_norm(d, 2, dim=tail or axes, keepdim=True).square_()
        if tail and head:
            ss = ss.sum(dim=head, keepdim=True)
        return ss.div_(count)

    def sub(self, a, b):
        return torch.sub(a, b)

    def scale_(self, a, s):
        return a.mul_(s)

    def rsqrt(self, v, eps):
        return torch.rsqrt(v + eps)

    def muladd(self, a, s, t):
        if s is not None and t is not None:
            return torch.addcmul(t, a, s)
        if s is not None:
            return a * s
        if t is not None:
            return a + t
        return a

    def sum(self, a, axes):
        if not axes:
            return a
        lead = tuple(range(len(axes)))
        if axes == lead and a.is_contiguous() and a.ndim > len(axes):
            # sum over leading axes = ones-vector times a matrix (one GEMV pass)
            k = len(axes)
            rows = math.prod(a.shape[:k])
            flat = a.reshape(rows, -1)
            out = torch.ones(1, rows, dtype=a.dtype, device=a.device) @ flat
            return out.reshape((1,) * k + tuple(a.shape[k:]))
        return a.sum(dim=axes, keepdim=True)

    def wsum(self, a, w, axes):
        if w is None:
            return self.sum(a, axes)
        ones = tuple(ax for ax in axes if w.shape[ax] == 1)
        rest = tuple(ax for ax in axes if ax not in ones)
        if ones:  # w is constant along these: reduce a first (now small), then weight
            a = a.sum(dim=ones, keepdim=True)
            return a * w if not rest else (a * w).sum(dim=rest, keepdim=True)
        k = len(rest)
        lead = a.ndim - k
        if rest == tuple(range(lead, a.ndim)) and a.is_contiguous() and all(w.shape[ax] == 1 for ax in range(lead)):
            # Σ over the trailing block of a·w = a matrix-vector product: no a·w temporary
            cols = math.prod(a.shape[lead:])
            wv = w.reshape(w.shape[lead:]).expand(a.shape[lead:]).reshape(cols, 1)
            out = a.reshape(-1, cols) @ wv
            return out.reshape(tuple(a.shape[:lead]) + (1,) * k)
        return (a * w).sum(dim=rest, keepdim=True)

    def grad_input(self, dy, w, xhat, k, c1, c2, buf):
        # dx = k·((w·dy − c1) − x̂·c2).  On a CPU an update in place (read and write
        # one array) costs about a third of writing a fresh array, so: one write
        # into buf, then in-place updates only.
        if buf is None:
            buf = torch.empty_like(dy)
        if w is None:
            out = torch.addcmul(dy, xhat, -c2, out=buf)  # dy − x̂·c2
        else:
            out = torch.mul(dy, w, out=buf).addcmul_(xhat, -c2)  # w·dy − x̂·c2
        out.mul_(k)
        # (… − c1)·k as two updates in place: addcmul with a broadcast first
        # argument is several times slower on a CPU than both together
        return out if c1 is None else out.sub_(c1 * k)

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


# ---------------------------------------------------------------------------
# The arithmetic, written once.
# ---------------------------------------------------------------------------
def _forward(ops, xv, axes, count, eps, w=None, b=None, center=True):
    """Normalize the viewed input over ``axes``; return ``(y, x_hat, mean, var, rstd)``.

    ``mean`` is ``None`` when ``center`` is false (RMS normalization: divide by
    ``sqrt(mean_S(x²) + eps)``, no mean subtracted).  ``y`` is ``x_hat`` when no
    affine parameter is given.
    """
    if center:
        mean = ops.mean(xv, axes)  # pass 1
        d = ops.sub(xv, mean)  # the deviation, a fresh temporary
        var = ops.mean_square(d, axes, count)  # pass 2: never E[x²] − E[x]²
    else:
        mean, d = None, xv
        var = ops.mean_square(xv, axes, count)
    rstd = ops.rsqrt(var, eps)
    xhat = ops.scale_(d, rstd) if center else ops.mul(xv, rstd)
    y = ops.muladd(xhat, w, b) if (w is not None or b is not None) else xhat
    return y, xhat, mean, var, rstd


def _backward(ops, dy, xhat, rstd, axes, count, w=None, w_axes=None, b_axes=None, center=True):
    """Analytic gradients of ``y = γ·x̂ + β``, ``x̂ = (x − μ_S)·r``, ``r = (σ²_S + ε)^(-1/2)``.

    With ``g = γ·dy`` and ``M = |S|``::

        dx = r · ((g − mean_S(g)) − x̂ · mean_S(g·x̂))    (no mean_S(g) term if not centred)
        dγ = Σ_P dy·x̂,   dβ = Σ_Q dy                      (P, Q = the axes γ, β are broadcast along)

    Where γ is constant over S (Batch and Instance Norm), it factors out:
    ``dx = (γ·r)·((dy − mean_S(dy)) − x̂·mean_S(dy·x̂))``, and the sums over S
    are reused for dγ and dβ when P contains S.  Where γ varies within S
    (Layer and Group Norm), ``mean_S(g)`` and ``mean_S(g·x̂)`` are weighted
    sums of ``dy`` and ``dy·x̂``, so ``g`` is never formed on its own; the
    axes of S along which γ is constant (Group Norm's positions) are summed
    first, once, for both the means and dγ, dβ.  The
    mean is subtracted before the ``x̂`` term, so a large common part of ``g``
    cancels exactly first.  All arrays are in the viewed shape;
    ``w_axes``/``b_axes`` are ``None`` when that gradient is not wanted.
    """
    p = ops.mul(dy, xhat)  # dy·x̂: the one activation-sized temporary
    if w is None or all(w.shape[a] == 1 for a in axes):
        sp = ops.sum(p, axes)  # Σ_S dy·x̂
        sd = ops.sum(dy, axes) if (center or b_axes is not None) else None  # Σ_S dy
        c2, c1 = sp / count, (sd / count if center else None)
        k = rstd if w is None else w * rstd  # statistic-sized
        g = None  # the weight is applied through k
        gw = _sum_via(ops, p, sp, axes, w_axes)
        gb = _sum_via(ops, dy, sd, axes, b_axes)
    else:
        const = tuple(a for a in axes if w.shape[a] == 1)  # axes of S along which γ is constant
        rest = tuple(a for a in axes if a not in const)
        sp, sd = ops.sum(p, const), ops.sum(dy, const)  # summed there once, shared below
        c2 = ops.wsum(sp, w, rest) / count
        c1 = ops.wsum(sd, w, rest) / count if center else None
        k, g = rstd, w
        gw = _sum_via(ops, p, sp, const, w_axes)
        gb = _sum_via(ops, dy, sd, const, b_axes)
    buf = None if any(t is p for t in (gw, gb)) else p  # p is free now: dx may overwrite it
    dx = ops.grad_input(dy, g, xhat, k, c1, c2, buf)
    return Grads(dx, gw, gb)


def _sum_via(ops, a, a_S, S_axes, axes):
    """``Σ_axes a``, from ``a_S = Σ_S a`` when S is among the axes (no second pass over ``a``)."""
    if axes is None:
        return None
    if set(S_axes) <= set(axes):
        return ops.sum(a_S, tuple(x for x in axes if x not in S_axes))
    return ops.sum(a, axes)


def normalize_backward(grad_xhat: Array, x_hat: Array, rstd: Array, axes: tuple[int, ...]) -> Array:
    """Analytic gradient of ``x_hat = (x - mean_S) * rstd`` with respect to ``x``.

    All arrays in the viewed shape; ``axes`` are the axes of S; works for NumPy
    arrays and torch tensors alike.  Returns
    ``rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` with ``g = grad_xhat``
    (the call :func:`_backward` makes with no affine parameters).
    """
    axes = tuple(axes)
    shape = tuple(grad_xhat.shape)
    count = math.prod(shape[a] for a in axes)
    return _backward(_ops(grad_xhat), grad_xhat, x_hat, rstd, axes, count, None, None).x


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


# ---------------------------------------------------------------------------
# The autograd Function: one for every S, with the affine map fused.
# ---------------------------------------------------------------------------
class _NormalizeFunction(torch.autograd.Function):
    """Forward :func:`_forward`, backward :func:`_backward` (the analytic gradient)."""

    @staticmethod
    def forward(ctx, x, weight, bias, S, eps, center):  # type: ignore[override]
        shape = tuple(x.shape)
        xv, axes, count = _view(x, S)
        wv = _param_view(weight, shape, S, xv.dtype)
        bv = _param_view(bias, shape, S, xv.dtype)
        y, xhat, mean, var, rstd = _forward(_TORCH, xv, axes, count, eps, wv, bv, center)
        ctx.S, ctx.axes, ctx.count, ctx.center = S, axes, count, center
        ctx.in_shape, ctx.in_dtype = shape, x.dtype
        ctx.w_shape = None if weight is None else tuple(weight.shape)
        ctx.b_shape = None if bias is None else tuple(bias.shape)
        ctx.param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        ctx.b_axes = None if bv is None else _param_axes(bv, tuple(xv.shape))
        ctx.save_for_backward(xhat, rstd, wv)
        out_mean = mean if mean is not None else torch.zeros_like(var)
        ctx.mark_non_differentiable(out_mean, var)
        y = y.reshape(shape)
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        return y, out_mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, _grad_mean, _grad_var):  # type: ignore[override]
        xhat, rstd, wv = ctx.saved_tensors
        dy = grad_y.reshape(xhat.shape)
        if dy.dtype != xhat.dtype:
            dy = dy.to(xhat.dtype)
        if not dy.is_contiguous():
            dy = dy.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        w_axes = _param_axes(wv, tuple(xhat.shape)) if need_w else None
        b_axes = ctx.b_axes if need_b else None
        g = _backward(_TORCH, dy, xhat, rstd, ctx.axes, ctx.count, wv, w_axes, b_axes, ctx.center)
        dx = g.x.reshape(ctx.in_shape).to(ctx.in_dtype) if need_x else None
        dw = g.weight.reshape(ctx.w_shape).to(ctx.param_dtypes[0]) if need_w else None
        db = g.bias.reshape(ctx.b_shape).to(ctx.param_dtypes[1]) if need_b else None
        return dx, dw, db, None, None, None


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
    count = S.set_size(tuple(x.shape))
    if isinstance(x, torch.Tensor):
        needs = any(isinstance(t, torch.Tensor) and t.requires_grad for t in (x, weight, bias))
        if needs and torch.is_grad_enabled():
            y, mean, var = _NormalizeFunction.apply(x, weight, bias, S, eps, center)
            return y, Moments(mean, var, count)
    shape = tuple(x.shape)
    xv, axes, count = _view(x, S)
    ops = _ops(x)
    wv = _param_view(weight, shape, S, xv.dtype)
    bv = _param_view(bias, shape, S, xv.dtype)
    y, _, mean, var, _ = _forward(ops, xv, axes, count, eps, wv, bv, center)
    if mean is None:
        mean = ops.xp.zeros_like(var)
    xp = _namespace(x)
    y = xp.reshape(y, shape)
    if y.dtype != x.dtype:
        y = xp.astype(y, x.dtype)
    return y, Moments(mean, var, count)
