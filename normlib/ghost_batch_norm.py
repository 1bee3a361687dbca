r"""Ghost Batch Norm (Hoffer et al. 2017): Batch Norm over virtual sub-batches of a batch.

A batch of :math:`N` images is cut into :math:`k = N / g` consecutive
*ghost batches* of :math:`g` images, and each is normalized with its own
statistics, as Batch Norm would normalize a batch of :math:`g`:

.. math::
    y_{n,c,h,w} = \gamma_c\, \frac{x_{n,c,h,w} - \mu_{j,c}}{\sqrt{\sigma^2_{j,c} + \epsilon}} + \beta_c,
    \qquad \mu_{j,c}, \sigma^2_{j,c} \text{ over the } g \text{ images of ghost batch } j = \lfloor n/g \rfloor
    \text{ and } (h, w).

The set S of an entry is Batch Norm's set restricted to its ghost batch.  Each
ghost batch updates the running statistics in turn (``k`` momentum updates per
call), which is what calling Batch Norm once per chunk does; eval mode uses them
as Batch Norm does.  Hoffer et al. use it to keep the statistics of a small
batch (and their regularizing noise) while training with a large one; the
reverse question, how much of small-batch Batch Norm's damage is the noise of
its statistics alone, is measured in the book's chapter on small batches.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _checks as chk
from .nn import BatchNorm2d

__all__ = ["GhostBatchNorm2d"]


class GhostBatchNorm2d(BatchNorm2d):
    """Batch Norm with statistics over ghost batches of ``ghost_batch_size`` images.

    Args:
        num_features: C.
        ghost_batch_size: g, the images per ghost batch (≥ 1; the training
            batch N must be a multiple of it).
        eps, momentum, affine, track_running_stats, device, dtype: as
            :class:`torch.nn.BatchNorm2d`.

    Shapes: input and output ``(N, C, H, W)``, ``N`` a multiple of ``g`` in
    training; parameters and buffers ``(C,)``.  ``state_dict`` keys are those of
    ``torch.nn.BatchNorm2d``.  With ``g = N`` it is Batch Norm.

    Raises ``ValueError`` for a non-positive ``ghost_batch_size``, a training
    batch that is not a multiple of it, and the input errors of Batch Norm.

    Example::

        >>> import torch
        >>> ghost = GhostBatchNorm2d(3, ghost_batch_size=2)
        >>> x = torch.randn(8, 3, 4, 4)
        >>> y = ghost(x)
        >>> torch.allclose(y[2:4].mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6)  # each ghost batch
        True
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        g = chk.check_positive_int(ghost_batch_size, "ghost_batch_size", "GhostBatchNorm2d")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.ghost_batch_size = g

    def forward(self, input: Tensor) -> Tensor:
        if not self.training:
            return super().forward(input)
        op = self._check_batch_input(input)
        g, n = self.ghost_batch_size, int(input.shape[0])
        if n % g:
            raise ValueError(
                f"{op}: the batch of input of shape {list(input.shape)} is not a multiple of "
                f"ghost_batch_size={g}"
            )
        # Batch Norm's own training step on each ghost batch in turn (its momentum, its
        # cumulative average for momentum=None, its count of batches)
        step = super().forward
        outs = [step(chunk) for chunk in input.split(g, dim=0)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ghost_batch_size={self.ghost_batch_size}"
