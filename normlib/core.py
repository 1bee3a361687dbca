"""The statistics core under every normalization layer: the public entry point and the fast paths.

``normalize(x, S, eps, weight, bias)`` views ``x`` as :class:`~normlib.sets.StatSet`
``S`` says, takes the biased mean and variance over S in two passes, and returns

.. math::  y = \\frac{x - \\mu_S}{\\sqrt{\\sigma^2_S + \\epsilon}}\\,\\gamma + \\beta

with the statistics.  The formulas themselves, short enough to read on one
screen, are :mod:`normlib.reference` (``moments``, ``standardize`` and the
backward ``rstd·(g − mean_S(g) − x̂·mean_S(g·x̂))``); this module runs them fast
and is tested against them.

One path down
-------------
:func:`normalize` (the public function) views and casts the input, then takes
one of three routes:

* NumPy (or any array-API array), an empty tensor, a tensor inside a
  ``torch.func`` transform, or a call ``torch.compile`` is tracing: the
  reference formulas, in array operations that autograd, ``torch.func``
  (``grad``, ``vmap``, ``hessian``) and Dynamo all see through;
* otherwise a *kernel*, chosen in one place (:func:`_kernel`): the C kernels of
  :mod:`normlib.fused` (one loop per set, as PyTorch's native kernels) where
  they apply, else :class:`_WholeTensor`, the same arithmetic in whole-tensor
  torch operations (:func:`_forward`, :func:`_backward`);
* a tensor that needs gradients runs its kernel inside the one autograd
  Function :class:`_Normalize`, whose backward is the kernel's analytic
  backward, or, when the backward itself is differentiated
  (``create_graph=True``), the reference backward in torch operations.

Counting passes over memory (one pass reads or writes one activation-sized
array; :func:`normbook.timing.count_passes` counts them), the whole-tensor
forward is five or six operations: mean, ``d = x − μ`` (the one fresh array),
``Σd²``, then ``d·r·γ + β`` in place.  Its backward takes ``Σ dy`` and
``Σ dy·x`` (the product is its fresh array) and writes ``dx`` into that array
as ``a·dy + b·x + c``, with ``a``, ``b``, ``c`` constant over each set.  The
Function saves the input and the statistics, as PyTorch's native kernels do,
and no activation of its own.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
import torch
from torch._subclasses.fake_tensor import is_fake

from . import fused, reference
from .reference import Moments
from .sets import StatSet

__all__ = ["Moments", "moments", "normalize", "normalize_backward", "Grads"]

Array = Any  # a NumPy array or a torch tensor


class Grads(NamedTuple):
    """Gradients returned by :func:`_backward`: input (viewed shape), weight and bias (viewed, or None)."""

    x: Array
    weight: Array | None
    bias: Array | None


_HALF = (torch.float16, torch.bfloat16, np.float16, np.dtype("float16"))


def _compute_dtype(dtype):
    # Half precision accumulates badly: compute in float32 and cast back, as
    # PyTorch's CPU kernels and flax do.
    if dtype in _HALF:
        return torch.float32 if isinstance(dtype, torch.dtype) else np.float32
    return dtype


# ---------------------------------------------------------------------------
# The whole-tensor torch path: the arithmetic written once against a few
# primitives, in the fast torch forms.
# ---------------------------------------------------------------------------
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


class _TorchOps:
    """The primitives of :func:`_forward` and :func:`_backward` in torch's fast forms.

    On a CPU, writing a fresh activation-sized array costs about twice an
    update in place, and every fresh array the allocator has to map costs page
    faults on top; so each of the forward and the backward allocates one such
    array and updates it in place from then on.  Sums along a contiguous block
    of memory, weighted or not, are matrix-vector products (one pass, no
    temporary).
    """

    def mean(self, a, axes):
        return a.mean(dim=axes, keepdim=True)

    def mean_square(self, d, axes, count):
        """``mean_S(d²)`` (``count`` = |S|) in one reduction pass, no ``d²`` temporary."""
        # over the trailing (contiguous) axes of S first: vector_norm is slow across strided axes
        tail, head = _split_trailing(axes, d.ndim)
        ss = torch.linalg.vector_norm(d, 2, dim=tail or axes, keepdim=True).square()
        if tail and head:
            ss = ss.sum(dim=head, keepdim=True)
        return ss.div_(count)

    def sub(self, a, b):
        """``a − b``, a fresh array the caller owns."""
        return torch.sub(a, b)

    def rsqrt(self, v, eps):
        return torch.rsqrt(v + eps)

    def mul(self, a, b):
        return a * b

    def scale_shift_(self, a, scales, shift):
        """``a · s₁ · s₂ ⋯ + shift`` (``shift`` may be None), in place: ``a`` is an array the core allocated."""
        for s in scales:
            a.mul_(s)
        return a if shift is None else a.add_(shift)

    def sum(self, a, axes):
        return self.wsum(a, None, axes)

    def wsum(self, a, w, axes):
        """``Σ_axes a·w`` with ``w`` broadcast against ``a`` (``w=None`` means 1)."""
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
        """``(dy · a₁ · a₂ ⋯ + bx · x + c) · out_scale`` (``c``, ``out_scale`` may be None), written into ``buf``."""
        # one write into buf, then updates in place (a fused addcmul with a
        # broadcast first argument is slower on a CPU than the two steps)
        out = torch.mul(dy, a_scales[0], out=buf)
        for s in a_scales[1:]:
            out.mul_(s)
        out.addcmul_(x, bx)
        if c is not None:
            out.add_(c)
        return out if out_scale is None else out.mul_(out_scale)


_TORCH = _TorchOps()


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


def _param_axes(param, x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Axes along which a viewed parameter (a tensor, or its shape) is broadcast: its gradient sums over them."""
    pshape = param if isinstance(param, tuple) else tuple(param.shape)
    return tuple(i for i, (s, t) in enumerate(zip(pshape, x_shape)) if s == 1 and t != 1)


def _traced(t: torch.Tensor) -> bool:
    # torch.compile, torch.export and FakeTensorMode see tensors without data:
    # no decision may depend on the values there
    return torch.compiler.is_compiling() or is_fake(t)


# Where rstd is this small, r² and r³ underflow float32 in the backward (|x| ≳ 1e10).
_TINY_RSTD = {torch.float32: 1e-10}


class _WholeTensor(NamedTuple):
    """The whole-tensor torch kernel: :func:`_forward` and :func:`_backward` over ``axes`` (|S| = ``count``).

    Takes and returns tensors in the caller's shapes and views them as S asks
    (``view_shape``, ``weight_view``, ``bias_view``) inside, as the C kernel of
    :class:`normlib.fused.Kernel`, which has the same two methods, reads them
    as memory.  ``forward`` returns ``(y, mean, var, rstd)``; ``rstd`` is what
    ``backward`` takes besides the input and the mean.  Where ``Σ(x − μ)²``
    overflows float32 (``|x| ≳ 1e19``) both passes are taken again in float64,
    so the answer does not depend on which kernel ran.
    """

    axes: tuple[int, ...]
    count: int
    shape: tuple[int, ...]  # the input's
    view_shape: tuple[int, ...]
    weight_view: tuple[int, ...] | None
    bias_view: tuple[int, ...] | None

    def forward(self, x, weight, bias, eps: float, center: bool):
        xv, wv, bv = _view(x, self.view_shape), _view(weight, self.weight_view), _view(bias, self.bias_view)
        y, mean, var, rstd = _forward(_TORCH, xv, self.axes, self.count, eps, wv, bv, center)
        if xv.dtype != torch.float64 and not _traced(xv) and not bool(torch.isfinite(var).all()):
            wide = _forward(_TORCH, xv.double(), self.axes, self.count, eps, _double(wv), _double(bv), center)
            y, mean, var, rstd = (None if t is None else t.to(xv.dtype) for t in wide)
        return _view(y, self.shape), (torch.zeros_like(var) if mean is None else mean), var, rstd

    def backward(self, dy, x, mean, rstd, weight, eps: float, center: bool, need_w: bool, bias_shape):
        """``(dx, dweight, dbias)`` in the caller's shapes; ``bias_shape`` (the bias's) is None when dbias
        is not wanted (``eps`` is in ``rstd``)."""
        tiny = _TINY_RSTD.get(x.dtype)
        if tiny is not None and not _traced(x) and bool((rstd < tiny).any()):
            # r² and r³ would underflow float32: the backward in float64
            wide = self.backward(dy.double(), x.double(), mean.double(), rstd.double(), _double(weight), eps,
                                 center, need_w, bias_shape)
            return tuple(None if g is None else g.to(x.dtype) for g in wide)
        xv, dyv, wv = _view(x, self.view_shape), _view(dy, self.view_shape), _view(weight, self.weight_view)
        w_axes = _param_axes(wv, self.view_shape) if need_w else None
        b_axes = None if bias_shape is None else _param_axes(self.bias_view, self.view_shape)
        shift = mean if center else None
        g = _backward(_TORCH, dyv, xv, shift, rstd, rstd, self.axes, self.count, wv, w_axes, b_axes, center)
        return (_view(g.x, self.shape), None if w_axes is None else g.weight.reshape(weight.shape),
                None if b_axes is None else g.bias.reshape(bias_shape))


def _view(t, shape):
    """``t`` reshaped to ``shape`` (``None`` stays ``None``; no call where the shape is already right)."""
    return t if t is None or t.shape == shape else t.reshape(shape)


def _double(t):
    return None if t is None else t.double()


# ---------------------------------------------------------------------------
# Shapes: the view S asks for, remembered per shape (a training loop asks the
# same question on every call).
# ---------------------------------------------------------------------------
class _Plan(NamedTuple):
    shape: tuple[int, ...]  # the input's
    view_shape: tuple[int, ...]
    axes: tuple[int, ...]  # the axes of S in the view
    count: int  # |S|
    weight_view: tuple[int, ...] | None
    bias_view: tuple[int, ...] | None
    whole: _WholeTensor  # the whole-tensor kernel for these shapes
    fused: fused.Kernel | None  # the C kernel for these shapes, if their sets are contiguous blocks


_PLANS: dict = {}


def _plan(S: StatSet, shape: tuple[int, ...], wshape, bshape) -> _Plan:
    key = (S, shape, wshape, bshape)
    plan = _PLANS.get(key)
    if plan is None:
        view = tuple(S.view_shape(shape))
        axes = S.reduce_axes(shape)
        count = math.prod([view[a] for a in axes])
        stat = tuple(1 if i in axes else s for i, s in enumerate(view))
        wview, bview = _param_view_shape(wshape, shape, S), _param_view_shape(bshape, shape, S)
        layout = fused.shape_layout(view, axes, wview, bview)
        plan = _Plan(shape, view, axes, count, wview, bview, _WholeTensor(axes, count, shape, view, wview, bview),
                     None if layout is None else fused.Kernel(layout, axes, stat))
        if torch.compiler.is_compiling():  # a traced call computes its plan; the graph remembers it
            return plan
        if len(_PLANS) > 4096:  # many shapes (e.g. varying sequence lengths): start again
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _param_view_shape(pshape, shape: tuple[int, ...], S: StatSet):
    """The shape a parameter broadcastable to ``shape`` takes in the view of S.

    Only Group Norm's view changes the axes: its channel axis C becomes (G, C/G).
    """
    if pshape is None:
        return None
    ndim = len(shape)
    padded = (1,) * (ndim - len(pshape)) + tuple(pshape)
    if len(pshape) > ndim or any(s not in (1, t) for s, t in zip(padded, shape)):
        raise ValueError(
            f"normalize: a parameter of shape {list(pshape)} does not broadcast "
            f"against input of shape {list(shape)}"
        )
    if S.groups is None:
        return padded
    c = padded[1]
    return (padded[0], *((S.groups, c // S.groups) if c != 1 else (1, 1)), *padded[2:])


# ---------------------------------------------------------------------------
# The one place a kernel is chosen, and the one autograd Function.
# ---------------------------------------------------------------------------
def _kernel(x: torch.Tensor, plan: _Plan, weight, bias):
    """The C kernels where they apply (the shapes, remembered in the plan, and :func:`normlib.fused.usable`
    on the tensors), else the whole-tensor path."""
    if plan.fused is not None and fused.usable(x, weight, bias):
        return plan.fused
    return plan.whole


def _views(plan: _Plan, x, weight, bias):
    """``x``, ``weight``, ``bias`` in the view of S (reshapes without copies where the memory allows)."""
    return (x if plan.view_shape == plan.shape else x.reshape(plan.view_shape),
            None if weight is None else weight.reshape(plan.weight_view),
            None if bias is None else bias.reshape(plan.bias_view))


class _Normalize(torch.autograd.Function):
    """``y = standardize(x, μ_S, σ²_S, eps, γ, β)`` by ``kernel``, with its analytic backward.

    Takes the input and parameters as the caller holds them (in the compute
    dtype); the kernel views them as S asks (the C kernel reads them as memory
    and needs no view), so the graph holds one node per call.  Saves the input,
    γ, μ and the kernel's own statistic, as PyTorch's native kernels do: no
    activation of its own.  When the backward is itself
    differentiated (``create_graph=True``: gradient penalties, Hessians), it
    runs the reference backward in torch operations, which autograd can
    differentiate again.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, plan, kernel, eps, center):  # type: ignore[override]
        y, mean, var, saved = kernel.forward(x, weight, bias, eps, center)
        ctx.plan, ctx.kernel, ctx.eps, ctx.center = plan, kernel, eps, center
        ctx.bias_shape = None if bias is None else tuple(bias.shape)
        ctx.save_for_backward(x, weight, mean, saved)
        ctx.mark_non_differentiable(mean, var)
        ctx.set_materialize_grads(False)  # the statistics get no gradient: no zeros to allocate for them
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _grad_mean, _grad_var):  # type: ignore[override]
        if dy is None:
            return (None,) * 7
        x, weight, mean, saved = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        bias_shape = ctx.bias_shape if need_b else None
        if torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate
            plan = ctx.plan
            xv, wv, _ = _views(plan, x, weight, None)
            dyv, _, _ = _views(plan, dy, None, None)
            dx, dw, db = reference.standardize_backward(dyv, xv, plan.axes, ctx.eps, wv,
                                                        plan.bias_view if need_b else None, center=ctx.center)
            dx = dx.reshape(plan.shape)
            dw = dw.reshape(weight.shape) if need_w else None
            db = db.reshape(bias_shape) if need_b else None
        else:
            dx, dw, db = ctx.kernel.backward(dy, x, mean, saved, weight, ctx.eps, ctx.center, need_w, bias_shape)
        return (dx if need_x else None), dw, db, None, None, None, None


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def _in_transform(*tensors) -> bool:
    """True inside a ``torch.func`` transform (a wrapped tensor has no plain storage)."""
    return any(t is not None and torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _cast(x: Array, dtype):
    if x.dtype == dtype:
        return x
    return x.to(dtype) if isinstance(x, torch.Tensor) else array_api_compat.array_namespace(x).astype(x, dtype)


def moments(x: Array, S: StatSet) -> Moments:
    """Two-pass biased mean and variance of ``x`` over the set ``S`` (:func:`normlib.reference.moments`).

    Shapes: ``x`` is ``(N, C, *spatial)`` (or any shape for Layer Norm);
    ``mean`` and ``var`` have ``S.view_shape(x.shape)`` with the axes of S of
    size 1.  Half precision is computed in float32.
    """
    return reference.moments(_cast(x, _compute_dtype(x.dtype)), S)


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
    plan = _plan(S, shape, None if weight is None else tuple(weight.shape),
                 None if bias is None else tuple(bias.shape))
    dtype = _compute_dtype(x.dtype)
    # torch.compile traces the reference formulas (plain torch operations) into its graph
    if (torch.compiler.is_compiling() or not isinstance(x, torch.Tensor) or x.numel() == 0
            or _in_transform(x, weight, bias)):
        return _normalize_by_reference(x, S, plan, dtype, eps, weight, bias, center)
    xc = _cast(x, dtype)
    wc = None if weight is None else _cast(weight, dtype)
    bc = None if bias is None else _cast(bias, dtype)
    kernel = _kernel(xc, plan, wc, bc)
    if _needs_grad(x, weight, bias):
        y, mean, var = _Normalize.apply(xc, wc, bc, plan, kernel, eps, center)
    else:
        y, mean, var, _ = kernel.forward(xc, wc, bc, eps, center)
    return _cast(y, x.dtype), Moments(mean, var, plan.count)


def _normalize_by_reference(x, S, plan, dtype, eps, weight, bias, center):
    """:func:`normalize` by :mod:`normlib.reference`: NumPy, empty tensors, ``torch.func`` transforms."""
    xp = reference._namespace(x)
    xc = _cast(x, dtype)
    m = reference.moments(xc, S, center=center)
    wv = None if weight is None else _cast(xp.reshape(weight, plan.weight_view), dtype)
    bv = None if bias is None else _cast(xp.reshape(bias, plan.bias_view), dtype)
    y = reference.standardize(xp.reshape(xc, plan.view_shape), m.mean, m.var, eps, wv, bv)
    mean, var = m.mean, m.var
    if isinstance(x, torch.Tensor):
        mean, var = mean.detach(), var.detach()
    return _cast(xp.reshape(y, tuple(x.shape)), x.dtype), Moments(mean, var, plan.count)


def normalize_backward(grad_xhat: Array, x_hat: Array, rstd: Array, axes: tuple[int, ...]) -> Array:
    """Analytic gradient of ``x_hat = (x - mean_S) * rstd`` with respect to ``x``.

    All arrays in the viewed shape; ``axes`` are the axes of S; works for NumPy
    arrays and torch tensors alike.  Returns
    ``rstd * (g - mean_S(g) - x_hat * mean_S(g * x_hat))`` with ``g = grad_xhat``
    (:func:`normlib.reference.normalized_backward`).
    """
    return reference.normalized_backward(grad_xhat, x_hat, rstd, tuple(axes))
