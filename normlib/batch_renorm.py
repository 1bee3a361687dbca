r"""Batch Renormalization (Ioffe 2017): Batch Norm whose training output uses the running statistics.

Batch Norm trains with the batch's statistics :math:`\mu_B, \sigma_B` and tests
with the running ones :math:`\mu, \sigma`; at small batches the two differ and
the network never sees at training time what it computes at test time.  Batch
Renorm keeps the batch normalization (and its gradient through
:math:`\mu_B, \sigma_B`) but corrects it towards the running statistics,

.. math::
    \hat x = \frac{x - \mu_B}{\sigma_B}\, r + d,\qquad
    r = \operatorname{clip}_{[1/r_{\max},\, r_{\max}]}\Big(\frac{\sigma_B}{\sigma}\Big),\qquad
    d = \operatorname{clip}_{[-d_{\max},\, d_{\max}]}\Big(\frac{\mu_B - \mu}{\sigma}\Big),

with :math:`r` and :math:`d` treated as constants by the gradient, then
:math:`y = \gamma \hat x + \beta`.  Unclipped, :math:`\hat x = (x - \mu)/\sigma`:
exactly the test-time output.  With :math:`r_{\max} = 1, d_{\max} = 0` it is
Batch Norm.  Here :math:`\sigma_B = \sqrt{\sigma^2_B + \epsilon}` (biased batch
variance) and :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}`.

The paper starts with :math:`r_{\max} = 1, d_{\max} = 0` (plain Batch Norm while
the running averages settle) and then relaxes them to 3 and 5;
:class:`BatchRenorm2d` takes that schedule in steps (``warmup_steps``, then a
linear ramp over ``ramp_steps``), counted by ``num_batches_tracked``.

The arithmetic is Batch Norm's: :math:`\gamma(r\hat x_B + d) + \beta =
(\gamma r)\hat x_B + (\gamma d + \beta)`, so the module hands
:func:`normlib.core.normalize` the weight :math:`\gamma r` and the bias
:math:`\gamma d + \beta`.  With :math:`r = 1, d = 0` these are :math:`\gamma`
and :math:`\beta` themselves and the output is bit-for-bit that of
:class:`normlib.nn.BatchNorm2d`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as chk
from . import functional as F
from .core import moments
from .nn import BatchNorm2d
from .sets import batch_set

__all__ = ["BatchRenorm2d", "renorm_limits"]


def renorm_limits(
    step: int, r_max: float, d_max: float, warmup_steps: int = 0, ramp_steps: int = 0
) -> tuple[float, float]:
    """The clipping limits ``(r_max_t, d_max_t)`` after ``step`` training batches.

    Plain Batch Norm (``1, 0``) for the first ``warmup_steps``, then a linear
    ramp to ``(r_max, d_max)`` over ``ramp_steps`` (immediately if 0).

    >>> renorm_limits(0, 3.0, 5.0, warmup_steps=10, ramp_steps=10)
    (1.0, 0.0)
    >>> renorm_limits(15, 3.0, 5.0, warmup_steps=10, ramp_steps=10)
    (2.0, 2.5)
    >>> renorm_limits(99, 3.0, 5.0, warmup_steps=10, ramp_steps=10)
    (3.0, 5.0)
    """
    if step < warmup_steps:
        return 1.0, 0.0
    t = 1.0 if ramp_steps == 0 else min(1.0, (step - warmup_steps) / ramp_steps)
    return 1.0 + (r_max - 1.0) * t, d_max * t


class BatchRenorm2d(BatchNorm2d):
    """Batch Renormalization over a ``(N, C, H, W)`` input.

    Args:
        num_features: C.
        eps, momentum, affine, device, dtype: as :class:`torch.nn.BatchNorm2d`
            (``momentum`` must be a number: the correction needs running
            statistics, so ``track_running_stats`` is always true).
        r_max: final limit of ``r`` (≥ 1; the paper uses 3).
        d_max: final limit of ``d`` (≥ 0; the paper uses 5).
        warmup_steps: training batches with ``r = 1, d = 0`` (plain Batch Norm).
        ramp_steps: training batches over which the limits grow linearly
            from ``(1, 0)`` to ``(r_max, d_max)``.

    Shapes: input and output ``(N, C, H, W)``; parameters and buffers ``(C,)``.
    ``state_dict`` keys are those of ``torch.nn.BatchNorm2d`` (a BN checkpoint
    loads with ``strict=True``; the limits are constructor arguments).  In eval
    mode it is Batch Norm with the running statistics.  ``last_r`` and
    ``last_d`` hold the corrections of the latest training batch, ``(C,)``.

    Raises ``ValueError`` for ``r_max < 1``, ``d_max < 0``, negative step
    counts, ``momentum=None``, and the input errors of Batch Norm.

    Example::

        >>> _ = torch.manual_seed(0)
        >>> brn = BatchRenorm2d(3, r_max=1.0, d_max=0.0)   # no correction: Batch Norm
        >>> x = torch.randn(4, 3, 2, 2)
        >>> torch.equal(brn(x), BatchNorm2d(3)(x))
        True
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 0,
        ramp_steps: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        op = "BatchRenorm2d"
        chk.check_momentum(momentum, op, allow_none=False)
        if not r_max >= 1.0:
            raise ValueError(f"{op}: r_max must be >= 1, got r_max={r_max!r}")
        if not d_max >= 0.0:
            raise ValueError(f"{op}: d_max must be >= 0, got d_max={d_max!r}")
        for name, v in (("warmup_steps", warmup_steps), ("ramp_steps", ramp_steps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{op}: {name} must be an integer >= 0, got {name}={v!r}")
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.ramp_steps = warmup_steps, ramp_steps
        self.last_r: Tensor | None = None
        self.last_d: Tensor | None = None

    def limits(self) -> tuple[float, float]:
        """The clipping limits for the next training batch (:func:`renorm_limits`)."""
        return renorm_limits(
            int(self.num_batches_tracked), self.r_max, self.d_max, self.warmup_steps, self.ramp_steps
        )

    def forward(self, input: Tensor) -> Tensor:
        if not self.training:
            return super().forward(input)
        op = self._check_batch_input(input)
        S = batch_set()
        chk.check_more_than_one(S.set_size(tuple(input.shape)), op, input)
        C = self.num_features
        r_lim, d_lim = self.limits()
        with torch.no_grad():  # r and d are constants for the gradient
            m = moments(input.detach(), S)
            mu_b, var_b = m.mean.reshape(C), m.var.reshape(C)
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (torch.sqrt(var_b + self.eps) / sigma).clamp(1.0 / r_lim, r_lim)
            d = ((mu_b - self.running_mean) / sigma).clamp(-d_lim, d_lim)
            if r_lim == 1.0 and d_lim == 0.0:  # exactly Batch Norm (not 1 - ulp, not -0.0)
                r, d = torch.ones_like(r), torch.zeros_like(d)
        gamma = self.weight if self.affine else torch.ones_like(r)
        beta = self.bias if self.affine else torch.zeros_like(d)
        w = gamma * r if r_lim != 1.0 else gamma
        b = beta + gamma * d if d_lim != 0.0 else beta
        # Batch Norm's training step with γr and γd + β: the same statistics, the same update
        # of the running ones
        y = F.batch_norm(input, self.running_mean, self.running_var, w, b, True, self.momentum, self.eps)
        self.num_batches_tracked.add_(1)
        self.last_r, self.last_d = r, d
        return y

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
            f"ramp_steps={self.ramp_steps}"
        )
