"""Normalization modules with PyTorch's constructor arguments, names and state.

A ``torch.nn.BatchNorm2d``'s ``state_dict`` loads into :class:`BatchNorm2d`
with ``strict=True`` and the reverse (an old one without
``num_batches_tracked`` too, as in PyTorch); ``train()``/``eval()``,
``momentum=None`` (cumulative average), ``num_batches_tracked``, ``affine`` and
``track_running_stats`` behave as in PyTorch.  The modules hold only state:
the arithmetic is :mod:`normlib.functional`.

``torch.jit.script`` is refused with a clear error (see the API page for why);
``torch.export`` and ``torch.compile`` are the ways to trace these modules.
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


class NormModule(chk.NoTorchScript, nn.Module):
    """Base of normlib's normalization modules: the one place the affine parameters are registered.

    ``weight`` (γ, ones) and ``bias`` (β, zeros) are ``nn.Parameter``s of the shape
    a subclass gives (per channel for Batch/Instance/Group Norm, per element for
    Layer Norm), or ``None`` when switched off, so the ``state_dict`` keys are
    PyTorch's.
    """

    def _register_affine(self, shape: Sequence[int], affine: bool, bias: bool, device=None, dtype=None) -> None:
        """Register ``weight`` and (if ``bias``) ``bias`` of ``shape`` when ``affine``, else both as ``None``."""
        kw = {"device": device, "dtype": dtype}
        self.register_parameter("weight", nn.Parameter(torch.empty(tuple(shape), **kw)) if affine else None)
        self.register_parameter("bias", nn.Parameter(torch.empty(tuple(shape), **kw)) if affine and bias else None)
        self._reset_affine()

    def _reset_affine(self) -> None:
        """γ ← 1, β ← 0 (whichever exist)."""
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def reset_parameters(self) -> None:
        self._reset_affine()


# The docstrings of the three Batch Norm and the three Instance Norm modules differ
# only in the input's rank: each is written once, here, and filled in per class.
_BATCH_NORM_DOC = r"""Batch Normalization over a {rank} input, as ``torch.nn.{name}``.

    .. math::
        y = \frac{{x - \mathrm{{E}}_S[x]}}{{\sqrt{{\mathrm{{Var}}_S[x] + \epsilon}}}}\,\gamma_c + \beta_c

    S is one channel ``c`` over {over}: every sample of the batch{positions}
    (:func:`normlib.sets.batch_set`).  In training the batch's statistics
    normalize, with the *biased* variance (divided by :math:`|S|`), and the running
    estimates move with the *unbiased* one:

    .. math::
        \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mathrm{{E}}_S[x], \qquad
        \hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\tfrac{{|S|}}{{|S| - 1}}\,\mathrm{{Var}}_S[x]

    with :math:`m` = ``momentum`` (PyTorch's convention, the weight of the *new*
    batch; Keras's momentum is :math:`1 - m`, see
    :func:`normlib.hyperparams.torch_momentum`), or :math:`m = 1/t` at the
    :math:`t`-th training batch when ``momentum=None`` (the cumulative average;
    :math:`t` is ``num_batches_tracked``).  In eval the running estimates
    normalize; without them (``track_running_stats=False``) the batch's own
    statistics do.  The arithmetic is :func:`normlib.functional.batch_norm`.

    Args:
        num_features: :math:`C`, the number of channels of an input {shape}.
        eps: added to the variance for numerical stability. Default: ``1e-5``.
        momentum: :math:`m` above, a number in [0, 1], or ``None`` for the
            cumulative average. Default: ``0.1``.
        affine: learnable per-channel γ (``weight``, ones) and β (``bias``,
            zeros). Default: ``True``.
        track_running_stats: keep the buffers ``running_mean`` (zeros),
            ``running_var`` (ones) and ``num_batches_tracked``; if ``False`` they
            are ``None`` and batch statistics are used in eval too. Default: ``True``.
        device, dtype: of the parameters and buffers. Default: torch's defaults.
        bias: with ``affine``, whether β exists (keyword only). Default: ``True``.

    Shape:
        - Input: {shape}
        - Output: the input's shape

    Raises ``ValueError`` for an input of another rank or channel count and, in
    training, for a single value per channel; ``TypeError`` for a non-float
    input; the parameter and buffer checks of :func:`normlib.functional.batch_norm`.

    Examples::

        >>> m = {name}(3)
        >>> x = torch.randn({example})
        >>> torch.allclose(m(x), torch.nn.{name}(3)(x), atol=1e-5)
        True
        >>> int(m.num_batches_tracked), m.running_var.shape
        (1, torch.Size([3]))
    """

_INSTANCE_NORM_DOC = r"""Instance Normalization over a {rank} input, as ``torch.nn.{name}``.

    .. math::
        y = \frac{{x - \mathrm{{E}}_S[x]}}{{\sqrt{{\mathrm{{Var}}_S[x] + \epsilon}}}}\,\gamma_c + \beta_c

    S is one channel ``c`` of one sample over its {positions}
    (:func:`normlib.sets.instance_set`), with the *biased* variance.  PyTorch's
    defaults hold: no affine parameters and no running statistics.  With
    ``track_running_stats=True`` the running estimates move in training toward
    the batch average of the per-instance mean and *unbiased* variance,
    :math:`\hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\overline{{\mathrm{{E}}_S[x]}}`
    (likewise :math:`\hat\sigma^2`), :math:`m` = ``momentum``, and normalize in
    eval.  An unbatched input {unbatched} is treated as a batch of one.  The
    arithmetic is :func:`normlib.functional.instance_norm`.

    Args:
        num_features: :math:`C`, the number of channels.
        eps: added to the variance for numerical stability. Default: ``1e-5``.
        momentum: :math:`m` above, in [0, 1]; ``None`` leaves the running
            estimates where they are (PyTorch's behaviour). Default: ``0.1``.
        affine: learnable per-channel γ and β. Default: ``False``.
        track_running_stats: keep running estimates for eval. Default: ``False``.
        device, dtype: of the parameters and buffers. Default: torch's defaults.
        bias: with ``affine``, whether β exists (keyword only). Default: ``True``.

    Shape:
        - Input: {shape} or unbatched {unbatched}
        - Output: the input's shape

    Raises ``ValueError`` for an input of another rank, a channel count other
    than ``num_features`` when there is state to match (otherwise a warning, as
    in PyTorch), or a single position when using input statistics; ``TypeError``
    for a non-float input.

    Examples::

        >>> m = {name}(3)
        >>> x = torch.randn({example})
        >>> torch.allclose(m(x), torch.nn.{name}(3)(x), atol=1e-5)
        True
        >>> m(x[0]).shape == x[0].shape                     # unbatched
        True
    """


class _NormBase(NormModule):
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
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self._register_affine((num_features,), affine, bias, device, dtype)
        kw = {"device": device, "dtype": dtype}
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        self._reset_affine()

    #: The input ranks a subclass accepts (PyTorch's _check_input_dim).
    _input_ndims: tuple[int, ...] = ()

    def _check_input_dim(self, input: Tensor) -> None:
        chk.check_ndim(input, type(self).__name__, self._input_ndims)

    def _check_channels(self, input: Tensor, dim: int) -> None:
        chk.check_channels(input, self.num_features, type(self).__name__, dim)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        # As PyTorch: a state_dict saved before version 2 (or without metadata) may lack
        # num_batches_tracked; it then keeps this module's count (0 when fresh).
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            keep = self.num_batches_tracked is not None and self.num_batches_tracked.device.type != "meta"
            state_dict[key] = self.num_batches_tracked if keep else torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "bias={use_bias}, track_running_stats={track_running_stats}".format(
                **self.__dict__, use_bias=self.bias is not None
            )
        )


class _BatchNorm(_NormBase):
    """PyTorch's ``_BatchNorm.forward``: the bookkeeping around :func:`normlib.functional.batch_norm`."""

    def _check_batch_input(self, input: Tensor) -> str:
        """The checks every Batch Norm module runs first (array, rank, channels); its name."""
        op = type(self).__name__
        chk.check_array(input, op)
        self._check_input_dim(input)
        self._check_channels(input, 1)
        return op

    def forward(self, input: Tensor) -> Tensor:
        # called unbound, as _BatchNorm.forward(self, ...), by CrossProcessBatchNorm2d (a
        # torch.nn.BatchNorm2d): name the class, not self, for the helper
        _BatchNorm._check_batch_input(self, input)
        counts_batch = self.training and self.track_running_stats and self.num_batches_tracked is not None
        if counts_batch and self.momentum is None:
            # momentum=None: cumulative moving average, weight 1/t for batch t
            update_factor = 1.0 / float(self.num_batches_tracked + 1)
        else:
            update_factor = 0.0 if self.momentum is None else self.momentum
        # Batch statistics in training, and in eval when no running statistics exist.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # Training with track_running_stats=False leaves existing buffers untouched (PyTorch's rule).
        pass_buffers = not self.training or self.track_running_stats
        out = F.batch_norm(
            input,
            self.running_mean if pass_buffers else None,
            self.running_var if pass_buffers else None,
            self.weight,
            self.bias,
            use_batch_stats,
            update_factor,
            self.eps,
        )
        # Counted only once F.batch_norm has accepted the input: a call that
        # raises leaves num_batches_tracked (and the running statistics) as they were.
        if counts_batch:
            self.num_batches_tracked.add_(1)
        return out


#: Every Batch Norm module class, normlib's and torch's (their subclasses too: Batch Renorm,
#: Ghost Batch Norm, torch's SyncBatchNorm and the cross-process Batch Norm).
_BATCH_NORM_TYPES = (_BatchNorm, nn.modules.batchnorm._BatchNorm)

class BatchNorm1d(_BatchNorm):
    __doc__ = _BATCH_NORM_DOC.format(name="BatchNorm1d", rank="2D or 3D", example="4, 3, 5",
                                     shape=":math:`(N, C)` or :math:`(N, C, L)`",
                                     over=":math:`(N)` or :math:`(N, L)`", positions=" and every position along L")
    _input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    __doc__ = _BATCH_NORM_DOC.format(name="BatchNorm2d", rank="4D", example="4, 3, 5, 5", shape=":math:`(N, C, H, W)`",
                                     over=":math:`(N, H, W)`", positions=" and every pixel")
    _input_ndims = (4,)


class BatchNorm3d(_BatchNorm):
    __doc__ = _BATCH_NORM_DOC.format(name="BatchNorm3d", rank="5D", example="2, 3, 2, 3, 3",
                                     shape=":math:`(N, C, D, H, W)`", over=":math:`(N, D, H, W)`",
                                     positions=" and every voxel")
    _input_ndims = (5,)


class _InstanceNorm(_NormBase):
    """PyTorch's ``_InstanceNorm``: defaults ``affine=False, track_running_stats=False``; unbatched input allowed."""

    _no_batch_dim = 2

    # PyTorch's signature with Instance Norm's defaults: no affine map, no running statistics.
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True) -> None:
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
    __doc__ = _INSTANCE_NORM_DOC.format(name="InstanceNorm1d", rank="3D", example="4, 3, 6", shape=":math:`(N, C, L)`",
                                        unbatched=":math:`(C, L)`", positions="positions along L")
    _no_batch_dim = 2


class InstanceNorm2d(_InstanceNorm):
    __doc__ = _INSTANCE_NORM_DOC.format(name="InstanceNorm2d", rank="4D", example="4, 3, 5, 5",
                                        shape=":math:`(N, C, H, W)`", unbatched=":math:`(C, H, W)`", positions="pixels")
    _no_batch_dim = 3


class InstanceNorm3d(_InstanceNorm):
    __doc__ = _INSTANCE_NORM_DOC.format(name="InstanceNorm3d", rank="5D", example="2, 3, 2, 3, 3", positions="voxels",
                                        shape=":math:`(N, C, D, H, W)`", unbatched=":math:`(C, D, H, W)`")
    _no_batch_dim = 4


class LayerNorm(NormModule):
    r"""Layer Normalization over the trailing ``normalized_shape`` axes, as ``torch.nn.LayerNorm``.

    .. math::
        y = \frac{x - \mathrm{E}_S[x]}{\sqrt{\mathrm{Var}_S[x] + \epsilon}} \odot \gamma + \beta

    S is the last :math:`D` = ``len(normalized_shape)`` axes of one sample
    (:func:`normlib.sets.layer_set`), with the *biased* variance; every other
    axis is a separate sample, so the output does not depend on the batch.
    There are no running statistics: training and eval compute the same thing
    (no estimator to choose, no momentum).  γ and β are *per element* of
    ``normalized_shape``, not per channel.  The arithmetic is
    :func:`normlib.functional.layer_norm`.

    Args:
        normalized_shape: the trailing shape S runs over; an int means one axis.
        eps: added to the variance for numerical stability. Default: ``1e-5``.
        elementwise_affine: learnable γ (``weight``, ones) and β (``bias``, zeros)
            of shape ``normalized_shape``. Default: ``True``.
        bias: with ``elementwise_affine``, whether β exists. Default: ``True``.
        device, dtype: of the parameters. Default: torch's defaults.

    Shape:
        - Input: :math:`(*, \text{normalized\_shape})`
        - Output: the input's shape

    Raises ``ValueError`` for an empty or non-positive ``normalized_shape`` or a
    bad ``eps`` at construction, and for an input whose trailing dimensions
    differ from ``normalized_shape`` (PyTorch's message) at call time.

    Examples::

        >>> m = LayerNorm(5)
        >>> x = 3.0 + 2.0 * torch.randn(2, 4, 5)                 # (batch, tokens, features)
        >>> torch.allclose(m(x), torch.nn.LayerNorm(5)(x), atol=1e-5)
        True
        >>> torch.allclose(m(x)[:1], m(x[:1]))                    # each sample on its own
        True
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
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self._register_affine(self.normalized_shape, elementwise_affine, bias, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None
        )


class GroupNorm(NormModule):
    r"""Group Normalization with ``num_groups`` groups of channels, as ``torch.nn.GroupNorm``.

    .. math::
        y = \frac{x - \mathrm{E}_S[x]}{\sqrt{\mathrm{Var}_S[x] + \epsilon}}\,\gamma_c + \beta_c

    S is one group of :math:`C/G` consecutive channels of one sample, over every
    position (:func:`normlib.sets.group_set`), with the *biased* variance.
    :math:`G = 1` is Layer Norm over :math:`(C, *)` with per-channel affine,
    :math:`G = C` is Instance Norm.  No running statistics (so no momentum):
    training and eval compute the same thing.  γ and β are *per channel*, not per group.  The
    arithmetic is :func:`normlib.functional.group_norm`.

    Args:
        num_groups: :math:`G`, which must divide ``num_channels``.
        num_channels: :math:`C`, the number of channels.
        eps: added to the variance for numerical stability. Default: ``1e-5``.
        affine: learnable per-channel γ (``weight``, ones) and β (``bias``,
            zeros). Default: ``True``.
        device, dtype: of the parameters. Default: torch's defaults.
        bias: with ``affine``, whether β exists (keyword only). Default: ``True``.

    Shape:
        - Input: :math:`(N, C, *)`
        - Output: the input's shape

    Raises ``ValueError`` when ``num_groups`` does not divide ``num_channels``
    (at construction) or for an input with another channel count (at call time).

    Examples::

        >>> m = GroupNorm(2, 6)
        >>> x = torch.randn(4, 6, 5, 5)
        >>> torch.allclose(m(x), torch.nn.GroupNorm(2, 6)(x), atol=1e-5)
        True
        >>> torch.allclose(GroupNorm(6, 6)(x), InstanceNorm2d(6)(x), atol=1e-5)  # G = C
        True
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
        chk.check_groups_divide(num_channels, num_groups, "GroupNorm")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        self._register_affine((num_channels,), affine, bias, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        chk.check_array(input, "group_norm")  # before reading input.ndim (a list has none)
        if input.ndim >= 2:  # fewer dimensions: group_norm's own message says so
            chk.check_channels(input, self.num_channels, "GroupNorm")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{num_groups}, {num_channels}, eps={eps}, affine={affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None
        )


# RMSNorm lives in normlib.rms with its functional form; re-exported here as in torch.nn.
from .rms import RMSNorm  # noqa: E402
