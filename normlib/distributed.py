"""Batch Norm across processes: exact merging of statistics, and a cross-process BN layer.

When a batch is split over workers, each worker sees ``n_k`` of the values of
a channel.  Batch Norm over the whole batch needs the mean and variance of all
``n = Σ n_k`` values.  Each worker summarizes its shard by three numbers per
channel, ``(n_k, mean_k, M2_k)`` with ``M2_k = Σ (x − mean_k)²`` (the sum of
squared deviations), and two summaries merge exactly (Chan, Golub and LeVeque,
1979):

.. math::
    n = n_a + n_b,\\quad \\delta = \\bar x_b - \\bar x_a,\\quad
    \\bar x = \\bar x_a + \\delta\\,\\frac{n_b}{n},\\quad
    M_2 = M_{2,a} + M_{2,b} + \\delta^2\\,\\frac{n_a n_b}{n}.

Unlike summing ``Σx`` and ``Σx²`` (whose difference ``E[x²] − E[x]²`` loses every
digit when the mean is large against the spread), the formula only combines
deviations, so it keeps float precision for data with a large offset.

:class:`CrossProcessBatchNorm2d` uses it on ``torch.distributed``: in the
forward pass one ``all_gather`` of ``3·C`` numbers per worker, in the backward
one ``all_reduce`` of ``2·C`` numbers; its output, input gradient and running
statistics equal those of Batch Norm over the concatenated batch.
:func:`spawn_check` runs it in two local processes (gloo backend) for the
chapter; its worker :func:`_worker` lives here because spawned processes must
import it.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from datetime import timedelta
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import _checks as chk
from . import nn as nnn
from .core import moments
from .sets import layer_set

__all__ = [
    "Stats",
    "shard_stats",
    "merge",
    "merge_all",
    "CrossProcessBatchNorm2d",
    "free_port",
    "spawn_check",
    "make_problem",
]

Array = Any


class Stats(NamedTuple):
    """Summary of a shard: ``count`` values, their ``mean`` and ``m2`` = Σ (x − mean)²."""

    count: Array
    mean: Array
    m2: Array

    @property
    def var(self) -> Array:
        """Biased variance ``m2 / count`` (the one Batch Norm normalizes with)."""
        return self.m2 / self.count

    @property
    def var_unbiased(self) -> Array:
        """Unbiased variance ``m2 / (count − 1)`` (the one the running variance tracks)."""
        return self.m2 / (self.count - 1)


def shard_stats(x: Array, axes: int | Sequence[int]) -> Stats:
    """``Stats`` of ``x`` over ``axes``: ``count``, ``mean`` and ``m2 = Σ (x − mean)²``.

    The arithmetic is the book's statistics core, :func:`normlib.core.moments`
    (two passes: the mean, then the mean squared deviation), over the set S of
    the reduced axes; ``m2 = var · count``.  Shapes: ``x`` is any array;
    ``mean`` and ``m2`` have the shape of ``x`` with ``axes`` removed.  For
    Batch Norm on ``(N, C, H, W)`` use ``axes=(0, 2, 3)``: one summary per
    channel.  NumPy in gives NumPy out; torch gives torch.  ``count`` is a
    Python int.

    Raises ``ValueError`` when the reduced axes hold no value or an axis is out of range.
    """
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    ndim = len(x.shape)
    if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"shard_stats: axes {axes} out of range for input of shape {list(x.shape)}")
    axes = tuple(sorted({a % ndim for a in axes}))
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if count < 1:
        raise ValueError(f"shard_stats: no values to summarize in input of shape {list(x.shape)} over axes {axes}")
    kept = [a for a in range(ndim) if a not in axes]
    # Move the reduced axes to the end: S is then Layer Norm's set over the trailing len(axes) axes.
    order = kept + list(axes)
    xt = x.permute(order) if isinstance(x, torch.Tensor) else np.transpose(x, order)
    m = moments(xt, layer_set(len(axes)))
    shape = tuple(x.shape[a] for a in kept)
    return Stats(count, m.mean.reshape(shape), m.var.reshape(shape) * count)


def merge(a: Stats, b: Stats) -> Stats:
    """Chan et al.'s exact pairwise merge of two summaries (NumPy or torch, any shapes that broadcast).

    An empty summary (``count == 0``) is the identity.
    """
    n = a.count + b.count
    if isinstance(n, (int, np.integer)) and n == 0:
        return a
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / n)
    return Stats(n, mean, m2)


def merge_all(parts: Sequence[Stats]) -> Stats:
    """Merge any number of summaries (pairwise tree, as in Chan et al.'s pairwise algorithm).

    Raises ``ValueError`` for an empty list.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_all: expected at least one Stats, got none")
    while len(parts) > 1:
        nxt = [merge(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


# ---------------------------------------------------------------------------
# Cross-process Batch Norm
# ---------------------------------------------------------------------------
class _CommLog:
    """Counts the collectives a layer issues and the bytes each worker sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []  # (kind, bytes sent by this worker)

    def add(self, kind: str, t: Tensor) -> None:
        self.calls.append((kind, t.numel() * t.element_size()))


def _stats_dtype(x: Tensor) -> torch.dtype:
    """The dtype the statistics are kept and sent in: float32 for a half-precision input (as
    PyTorch's kernels accumulate), the input's own dtype otherwise."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _all_gather_stats(x: Tensor, axes: tuple[int, ...], group, log: _CommLog) -> Stats:
    """The whole batch's per-channel ``Stats``: this shard's ``(n, mean, M2)`` sent to every
    process by one ``all_gather`` of ``3·C`` numbers, then :func:`merge_all`.

    An empty shard (``n = 0``) sends ``(0, 0, 0)``, the identity of the merge, so
    every process reaches the collective whatever its batch size.
    """
    C = x.shape[1]
    dtype = _stats_dtype(x)
    if x.numel() == 0:
        local = Stats(0, torch.zeros(C, dtype=dtype, device=x.device), torch.zeros(C, dtype=dtype, device=x.device))
    else:
        local = shard_stats(x.to(dtype), axes)
    packed = torch.stack([torch.full((C,), float(local.count), dtype=dtype, device=x.device), local.mean, local.m2])
    gathered = [torch.empty_like(packed) for _ in range(dist.get_world_size(group))]
    log.add("all_gather", packed)
    dist.all_gather(gathered, packed, group=group)
    return merge_all([Stats(int(count[0].item()), mean, m2) for count, mean, m2 in gathered])


class _CrossProcessBN(torch.autograd.Function):
    """Forward: gather ``(n, mean, M2)`` per channel from every worker and merge them;
    backward: all-reduce ``(Σ dy, Σ dy·x̂)`` per channel."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group, log):  # type: ignore[override]
        C = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        total = _all_gather_stats(x, axes, group, log)
        view = (1, C) + (1,) * (x.ndim - 2)
        rstd = (total.var + eps).rsqrt()
        x_hat = (x - total.mean.reshape(view)) * rstd.reshape(view)
        y = x_hat
        if weight is not None:
            y = y * weight.reshape(view) + bias.reshape(view)
        ctx.save_for_backward(x_hat, rstd, weight)
        ctx.count, ctx.axes, ctx.group, ctx.log = total.count, axes, group, log
        ctx.mark_non_differentiable(total.mean)
        return y.to(x.dtype), total.mean.detach(), total.var_unbiased.detach(), torch.tensor(total.count)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _dmean, _dvar, _dcount):  # type: ignore[override]
        x_hat, rstd, weight = ctx.saved_tensors
        dy_dtype, dy = dy.dtype, dy.to(x_hat.dtype)  # sums in the statistics' dtype (float32 for half)
        C = dy.shape[1]
        view = (1, C) + (1,) * (dy.ndim - 2)
        sums = torch.stack([dy.sum(dim=ctx.axes), (dy * x_hat).sum(dim=ctx.axes)])  # (2, C), local
        dbias, dweight = sums[0].clone(), sums[1].clone()  # this worker's share of dβ, dγ
        ctx.log.add("all_reduce", sums)
        dist.all_reduce(sums, group=ctx.group)  # Σ over every worker's values of the channel
        n = ctx.count
        k = rstd if weight is None else weight * rstd
        dx = k.reshape(view) * (dy - (sums[0] / n).reshape(view) - x_hat * (sums[1] / n).reshape(view))
        dx = dx.to(dy_dtype)  # a half-precision input gets a half-precision gradient
        if weight is None:
            return dx, None, None, None, None, None
        return dx, dweight, dbias, None, None, None


class CrossProcessBatchNorm2d(chk.NoTorchScript, nn.BatchNorm2d):
    r"""Batch Norm whose training statistics are those of the batch over all processes.

    .. math::
        y = \frac{x - \mathrm{E}_S[x]}{\sqrt{\mathrm{Var}_S[x] + \epsilon}}\,\gamma_c + \beta_c

    S is one channel over :math:`(N, H, W)` of the *whole* batch, every process's
    shard together.  Each process summarizes its shard per channel as
    ``(n_k, mean_k, M2_k)``; one ``all_gather`` of ``3·C`` numbers brings every
    summary to every process, where :func:`merge_all` gives the whole batch's
    mean and *biased* variance exactly.  The backward pass needs ``Σ dy`` and
    ``Σ dy·x̂`` over the whole batch: one ``all_reduce`` of ``2·C`` numbers.
    Shards may have different sizes, including 0 (a process with no sample
    contributes ``(0, 0, 0)``, the merge's identity, and still takes part in
    both collectives).  A float16/bfloat16 input keeps its statistics in float32
    and gets its output and gradient in its own dtype.

    The running estimates follow PyTorch's rule with the whole batch's *unbiased*
    variance: :math:`\hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mathrm{E}_S[x]`,
    :math:`\hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\tfrac{|S|}{|S|-1}\mathrm{Var}_S[x]`,
    :math:`m` = ``momentum`` (``None``: the cumulative average :math:`m = 1/t`).
    Gradients of ``weight`` and ``bias`` are each process's own share (a
    data-parallel wrapper sums or averages them, as for any parameter).  In
    eval, or when ``torch.distributed`` is not initialized, it is ordinary Batch
    Norm: the forward of :class:`normlib.nn.BatchNorm2d`.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype:
            as ``torch.nn.BatchNorm2d`` (a ``state_dict`` loads either way).
        process_group: the processes whose shards form the batch (keyword only).
            Default: ``None``, the whole world.

    ``comm`` records ``(collective, bytes sent by this process)`` for every call.

    Shape:
        - Input: :math:`(N_k, C, H, W)`, this process's shard (:math:`N_k` may be 0)
        - Output: the input's shape

    Raises ``ValueError`` (from the checks) for a non-4-D input or a channel
    count other than ``num_features``, and on every process when the whole
    batch has a single value per channel.

    Examples::

        >>> m = CrossProcessBatchNorm2d(3)                      # no process group: plain Batch Norm
        >>> x = torch.randn(4, 3, 2, 2)
        >>> torch.allclose(m(x), torch.nn.BatchNorm2d(3)(x), atol=1e-5)
        True
        >>> a, b = shard_stats(x[:1], (0, 2, 3)), shard_stats(x[1:], (0, 2, 3))  # two shards' summaries
        >>> torch.allclose(merge(a, b).var, x.var(dim=(0, 2, 3), unbiased=False), atol=1e-6)
        True
    """

    def __init__(self, *args, process_group=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group
        self.comm = _CommLog()

    # The input checks of normlib.nn.BatchNorm2d (messages name this class).
    _input_ndims = nnn.BatchNorm2d._input_ndims
    _check_input_dim = nnn.BatchNorm2d._check_input_dim
    _check_channels = nnn.BatchNorm2d._check_channels

    def forward(self, input: Tensor) -> Tensor:
        distributed = self.training and dist.is_available() and dist.is_initialized()
        if not distributed:
            # Exactly normlib.nn.BatchNorm2d (PyTorch's _BatchNorm bookkeeping: momentum=None,
            # num_batches_tracked, track_running_stats=False, eval without buffers).
            return nnn.BatchNorm2d.forward(self, input)
        op = type(self).__name__
        chk.check_array(input, op)
        self._check_input_dim(input)
        self._check_channels(input, 1)
        y, mean, var_unbiased, count = _CrossProcessBN.apply(
            input, self.weight, self.bias, self.eps, self.process_group, self.comm
        )
        if int(count) < 2:
            raise ValueError(f"{op}: Expected more than 1 value per channel when training, got {int(count)} over all processes")
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var_unbiased)
        return y


# ---------------------------------------------------------------------------
# Two local processes, for the chapter and the tests
# ---------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_problem(sizes: Sequence[int], channels: int = 3, hw: int = 4, offset: float = 100.0, seed: int = 0):
    """The data of the two-process check: a full batch, its upstream gradient, and the affine parameters.

    ``x`` is ``(Σ sizes, channels, hw, hw)`` float64 with a large per-channel
    ``offset`` (to show the merge is exact where ``E[x²] − E[x]²`` is not);
    process ``k`` gets the rows ``sum(sizes[:k]) … sum(sizes[:k+1])``.
    """
    g = torch.Generator().manual_seed(seed)
    n = int(sum(sizes))
    x = torch.randn(n, channels, hw, hw, generator=g, dtype=torch.float64) * 2 + offset * torch.arange(
        1, channels + 1, dtype=torch.float64
    ).view(1, -1, 1, 1)
    dy = torch.randn(n, channels, hw, hw, generator=g, dtype=torch.float64)
    weight = 1 + 0.5 * torch.randn(channels, generator=g, dtype=torch.float64)
    bias = torch.randn(channels, generator=g, dtype=torch.float64)
    return x, dy, weight, bias


def _worker(
    rank: int, world: int, port: int, outdir: str, sizes: Sequence[int], steps: int, timeout_s: float,
    dtype: torch.dtype = torch.float64,
) -> None:
    """One process of :func:`spawn_check`: join the group, run BN on its shard, save the results."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    try:
        x, dy, weight, bias = (t.to(dtype) for t in make_problem(sizes))
        lo, hi = int(sum(sizes[:rank])), int(sum(sizes[: rank + 1]))
        # Half-precision inputs with float32 parameters and buffers, as PyTorch's mixed precision.
        bn = CrossProcessBatchNorm2d(x.shape[1], dtype=_stats_dtype(x))
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
        out = {}
        for step in range(steps):
            xs = x[lo:hi].clone().requires_grad_()
            y = bn(xs)
            y.backward(dy[lo:hi])
            if step == 0:
                out["y"], out["dx"] = y.detach(), xs.grad
                out["dweight"], out["dbias"] = bn.weight.grad.clone(), bn.bias.grad.clone()
            bn.zero_grad()
        out["running_mean"], out["running_var"] = bn.running_mean.clone(), bn.running_var.clone()
        out["comm"] = list(bn.comm.calls)
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn_check(
    sizes: Sequence[int] = (2, 4), steps: int = 2, timeout_s: float = 60.0, dtype: torch.dtype = torch.float64
) -> list[dict]:
    """Run :class:`CrossProcessBatchNorm2d` in ``len(sizes)`` local processes (gloo, 127.0.0.1).

    Process ``k`` holds ``sizes[k]`` samples of :func:`make_problem`'s batch
    and runs ``steps`` training steps (forward, backward); a size may be 0
    (that process contributes nothing to the statistics, and still takes part
    in every collective).  ``dtype`` is the input's (float16 and bfloat16 run
    with float32 parameters and buffers; otherwise they share it).  Returns one dict
    per process with ``y``, ``dx``, ``dweight``, ``dbias`` (first step),
    ``running_mean``, ``running_var`` (after all steps) and ``comm``.

    The processes are started with ``torch.multiprocessing`` (spawn); a port
    is chosen at run time.  Raises ``RuntimeError`` if a process fails or the
    whole run exceeds ``timeout_s`` seconds (the processes are then killed:
    nothing is left hanging).
    """
    import torch.multiprocessing as mp

    world = len(sizes)
    with tempfile.TemporaryDirectory(prefix="normlib-xbn-") as outdir:
        ctx = mp.start_processes(
            _worker,
            args=(world, free_port(), outdir, tuple(int(s) for s in sizes), steps, timeout_s, dtype),
            nprocs=world,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=0.2):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"spawn_check: the {world} processes did not finish within {timeout_s} s")
        except Exception as e:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            if isinstance(e, RuntimeError):
                raise
            raise RuntimeError(f"spawn_check: a worker process failed: {e}") from e
        return [torch.load(os.path.join(outdir, f"rank{r}.pt")) for r in range(world)]
