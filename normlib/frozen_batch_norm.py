r"""Batch Norm frozen for fine-tuning: fixed statistics and affine map, whatever the mode.

:class:`FrozenBatchNorm` is the layer detection and segmentation backbones use
when their batches are too small for Batch Norm statistics (torchvision's
``FrozenBatchNorm2d``); :func:`freeze_batch_norm` swaps it in for every Batch
Norm layer of a model.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import _checks as chk
from . import functional as F
from . import nn as nnn

__all__ = ["FrozenBatchNorm", "freeze_batch_norm"]


class FrozenBatchNorm(nnn.NormModule):
    r"""Batch Norm with fixed statistics and affine parameters, in ``train()`` as in ``eval()``.

    .. math::
        y = \frac{x - \hat\mu_c}{\sqrt{\hat\sigma^2_c + \epsilon}}\,\gamma_c + \beta_c

    with ``running_mean`` :math:`\hat\mu`, ``running_var`` :math:`\hat\sigma^2`,
    ``weight`` :math:`\gamma` and ``bias`` :math:`\beta` all stored as *buffers*:
    no statistic is computed from the input (S is not used), the optimizer sees
    no parameter and ``model.train()`` moves nothing, so there is no momentum and
    no estimator.  This is Batch Norm's eval mode made permanent.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability. Default: ``1e-5``.
        device, dtype: of the four buffers. Default: torch's defaults.

    The ``state_dict`` keys are those of ``BatchNorm*d`` with ``affine=True``
    (a saved ``num_batches_tracked`` is accepted and dropped), so a trained Batch
    Norm's state loads with ``strict=True``.  :meth:`from_batch_norm` copies a
    live layer, keeping its dtype and device.

    Shape:
        - Input: :math:`(N, C, *)`, any number of trailing axes.
        - Output: the input's shape.

    Examples::

        >>> bn = torch.nn.BatchNorm2d(3).train()
        >>> _ = bn(torch.randn(8, 3, 4, 4) + 2.0)             # running statistics move
        >>> frozen = FrozenBatchNorm.from_batch_norm(bn).train()
        >>> x = torch.randn(2, 3, 4, 4)
        >>> torch.allclose(frozen(x), bn.eval()(x), atol=1e-6)  # train() changes nothing
        True
        >>> [name for name, _ in frozen.named_parameters()]     # nothing to train
        []
    """

    def __init__(self, num_features: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        num_features = chk.check_positive_int(num_features, "num_features", "FrozenBatchNorm")
        chk.check_eps(eps, "FrozenBatchNorm")
        self.num_features = num_features
        self.eps = eps
        kw = {"device": device, "dtype": dtype}
        self.register_buffer("weight", torch.ones(num_features, **kw))
        self.register_buffer("bias", torch.zeros(num_features, **kw))
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))

    @classmethod
    def from_batch_norm(cls, bn: nn.Module) -> "FrozenBatchNorm":
        """A frozen copy of a ``normlib.nn`` or ``torch.nn`` ``BatchNorm*d``.

        The buffers take the running statistics' dtype and device (a float64
        layer stays float64); a layer without ``weight`` (``affine=False``) gives
        γ = 1 and one without ``bias`` (``bias=False``) gives β = 0.  Raises
        ``ValueError`` for a layer without running statistics.
        """
        if getattr(bn, "running_mean", None) is None:
            raise ValueError(
                f"FrozenBatchNorm: {type(bn).__name__} has no running statistics "
                "(track_running_stats=False); there is nothing to freeze"
            )
        stats = bn.running_mean
        frozen = cls(bn.num_features, bn.eps, device=stats.device, dtype=stats.dtype)
        with torch.no_grad():
            for name in ("running_mean", "running_var", "weight", "bias"):
                source = getattr(bn, name, None)
                if source is not None:  # a missing γ or β keeps its identity value
                    getattr(frozen, name).copy_(source)
        return frozen

    def forward(self, input: Tensor) -> Tensor:
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"




def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every Batch Norm layer in ``module`` by a :class:`FrozenBatchNorm`.

    Returns the module (or the frozen replacement, if ``module`` itself is a
    Batch Norm layer).  The result behaves the same in ``train()`` and
    ``eval()``: the running statistics no longer move and γ, β get no gradient.

    >>> net = freeze_batch_norm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)))
    >>> type(net[1]).__name__
    'FrozenBatchNorm'
    """
    if isinstance(module, nnn._BATCH_NORM_TYPES):
        return FrozenBatchNorm.from_batch_norm(module)
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module
