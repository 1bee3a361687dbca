"""Normalization modules with PyTorch's constructor arguments, names and state.

A ``torch.nn.BatchNorm2d``'s ``state_dict`` loads into :class:`BatchNorm2d`
with ``strict=True`` and the reverse; ``train()``/``eval()``, ``momentum=None``
(cumulative average), ``num_batches_tracked``, ``affine`` and
``track_running_stats`` behave as in PyTorch.  The modules hold only state:
the arithmetic is :mod:`normlib.functional`.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from . import _checks as chk
from . import functional as F

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
]


class _NormBase(nn.Module):
    """Parameters ``weight``/``bias`` and buffers ``running_mean``/``running_var``/``num_batches_tracked``."""

    _version = 2

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        op = type(self).__name__
        chk.check_eps(eps, op)
        chk.check_momentum(momentum, op)
        num_features = chk.check_positive_int(num_features, "num_features", op)
        kw = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **kw))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **kw))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer(
                "num_batches_tracked",
                torch.tensor(0, dtype=torch.long, **{k: v for k, v in kw.items() if k != "dtype"}),
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def _check_channels(self, input: Tensor, dim: int) -> None:
        if input.shape[dim] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected input with {self.num_features} channels at dim {dim}, "
                f"got input of shape {list(input.shape)}"
            )

    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "bias={use_bias}, track_running_stats={track_running_stats}".format(
                **self.__dict__, use_bias=self.bias is not None
            )
        )


class _BatchNorm(_NormBase):
    """PyTorch's ``_BatchNorm.forward``: the bookkeeping around :func:`normlib.functional.batch_norm`."""

    def forward(self, input: Tensor) -> Tensor:
        chk.check_array(input, type(self).__name__)
        self._check_input_dim(input)
        self._check_channels(input, 1)
        factor = 0.0 if self.momentum is None else self.momentum
        count = self.training and self.track_running_stats and self.num_batches_tracked is not None
        if count and self.momentum is None:
            # momentum=None: cumulative moving average, weight 1/t for batch t
            factor = 1.0 / float(self.num_batches_tracked + 1)
        # Batch statistics in training, and in eval when no running statistics exist.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        out = F.batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )
        # Counted only once F.batch_norm has accepted the input: a call that
        # raises leaves num_batches_tracked (and the running statistics) as they were.
        if count:
            self.num_batches_tracked.add_(1)
        return out


class BatchNorm1d(_BatchNorm):
    """Batch Norm over a (N, C) or (N, C, L) input; see :func:`normlib.functional.batch_norm`."""

    def _check_input_dim(self, input: Tensor) -> None:
        chk.check_ndim(input, type(self).__name__, (2, 3))


class BatchNorm2d(_BatchNorm):
    """Batch Norm over a (N, C, H, W) input; see :func:`normlib.functional.batch_norm`."""

    def _check_input_dim(self, input: Tensor) -> None:
        chk.check_ndim(input, type(self).__name__, (4,))


class BatchNorm3d(_BatchNorm):
    """Batch Norm over a (N, C, D, H, W) input; see :func:`normlib.functional.batch_norm`."""

    def _check_input_dim(self, input: Tensor) -> None:
        chk.check_ndim(input, type(self).__name__, (5,))


class _InstanceNorm(_NormBase):
    """PyTorch's ``_InstanceNorm``: defaults ``affine=False, track_running_stats=False``; unbatched input allowed."""

    _no_batch_dim = 2

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input: Tensor) -> Tensor:
        op = type(self).__name__
        chk.check_array(input, op)
        chk.check_ndim(input, op, (self._no_batch_dim, self._no_batch_dim + 1))
        feature_dim = input.dim() - self._no_batch_dim
        if input.shape[feature_dim] != self.num_features:
            if self.affine or self.track_running_stats:
                self._check_channels(input, feature_dim)
            warnings.warn(
                f"{op}: input has {input.shape[feature_dim]} channels but num_features={self.num_features}; "
                "with affine=False and no running statistics num_features is unused"
            )
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats:  # checked here so the message shows the caller's shape, batched or not
            positions = 1
            for s in input.shape[feature_dim + 1 :]:
                positions *= int(s)
            chk.check_more_than_one(positions, op, input, "spatial element")
        unbatched = input.dim() == self._no_batch_dim
        x = input.unsqueeze(0) if unbatched else input
        out = F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
        )
        return out.squeeze(0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance Norm over (N, C, L) or unbatched (C, L); see :func:`normlib.functional.instance_norm`."""

    _no_batch_dim = 2


class InstanceNorm2d(_InstanceNorm):
    """Instance Norm over (N, C, H, W) or unbatched (C, H, W)."""

    _no_batch_dim = 3


class InstanceNorm3d(_InstanceNorm):
    """Instance Norm over (N, C, D, H, W) or unbatched (C, D, H, W)."""

    _no_batch_dim = 4


class LayerNorm(nn.Module):
    """Layer Norm over the trailing ``normalized_shape``; see :func:`normlib.functional.layer_norm`.

    Parameters ``weight`` and ``bias`` have shape ``normalized_shape`` (per element).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        chk.check_eps(eps, "LayerNorm")
        self.normalized_shape = tuple(chk.as_shape(normalized_shape, "LayerNorm"))
        if not self.normalized_shape:
            raise ValueError(f"LayerNorm: normalized_shape must have at least one dimension, got {normalized_shape!r}")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        kw = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **kw))
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **kw))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None
        )


class GroupNorm(nn.Module):
    """Group Norm with ``num_groups`` groups of channels; see :func:`normlib.functional.group_norm`.

    Parameters ``weight`` and ``bias`` have shape ``(num_channels,)``: per channel, not per group.
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        chk.check_eps(eps, "GroupNorm")
        num_groups = chk.check_positive_int(num_groups, "num_groups", "GroupNorm")
        num_channels = chk.check_positive_int(num_channels, "num_channels", "GroupNorm", minimum=0)
        if num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_channels must be divisible by num_groups, got "
                f"num_channels={num_channels} and num_groups={num_groups}"
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        kw = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, **kw))
            if bias:
                self.bias = nn.Parameter(torch.zeros(num_channels, **kw))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim >= 2 and input.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm: expected input with {self.num_channels} channels at dim 1, "
                f"got input of shape {list(input.shape)}"
            )
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{num_groups}, {num_channels}, eps={eps}, affine={affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None
        )


# RMSNorm lives in normlib.rms with its functional form; re-exported here as in torch.nn.
from .rms import RMSNorm  # noqa: E402
