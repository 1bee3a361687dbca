"""Deep residual networks with and without normalization, small enough to train in a cell.

The chapter on small batches and training without normalization measures how
deep a residual network can be before it stops training, for each way of
keeping its signal in check.  The networks here are multilayer perceptrons on
the digits (64 pixels in, 10 classes out): a linear stem to ``width`` features,
``depth`` residual blocks, a linear classifier.  Every block is
``x + α·f(x)`` with a two-layer branch ``f``; the variants differ in the branch
and its initialization (weights: He-normal, ``std = sqrt(2 / fan_in)``):

==============  ===================================================================
``plain``       ``f = W₂ relu(W₁ x)``, α = 1: no normalization, nothing else
``BN``          ``f = BN(W₂ relu(BN(W₁ x)))`` (Batch Norm after each linear layer)
``zero-γ``      ``BN`` with the last Batch Norm's γ initialized to 0 (Goyal et al.)
``SkipInit``    ``plain`` with a learned α initialized to 0 (De & Smith)
``Fixup``       ``plain`` with Fixup's initialization, scalar biases and multiplier
``NF``          ``f = W₂ relu(W₁ relu(x/β))`` with scaled Weight Standardization, β
                the expected standard deviation of the stream, α = 0.2 (NF-ResNets);
                trained with adaptive gradient clipping
==============  ===================================================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from normlib import nn as nnn
from normlib.norm_free import SkipInit, adaptive_grad_clip_, fixup_init_, scaled_standardize_weight

from .digits_sweep import Digits, one_thread

__all__ = ["VARIANTS", "ResidualMLP", "signal_through_depth", "train_residual", "DepthSweep", "depth_sweep"]

VARIANTS = ("plain", "BN", "zero-γ", "SkipInit", "Fixup", "NF")


def _linear(n_in: int, n_out: int, g: torch.Generator, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=g) * math.sqrt(2.0 / n_in))
        if bias:
            layer.bias.zero_()
    return layer


class _Branch(nn.Module):
    """``W₂ relu(W₁ x)`` with optional Batch Norms, Fixup's scalar biases, or scaled WS."""

    def __init__(self, width: int, variant: str, g: torch.Generator, beta: float = 1.0) -> None:
        super().__init__()
        bn = variant in ("BN", "zero-γ")
        self.fc1 = _linear(width, width, g, bias=not bn)
        self.fc2 = _linear(width, width, g, bias=not bn)
        self.bn1 = nnn.BatchNorm1d(width) if bn else None
        self.bn2 = nnn.BatchNorm1d(width) if bn else None
        if variant == "zero-γ":
            nn.init.zeros_(self.bn2.weight)
        self.fixup = variant == "Fixup"
        if self.fixup:  # scalar biases before each layer and the activation, a scalar multiplier
            self.b = nn.Parameter(torch.zeros(3))
            self.scale = nn.Parameter(torch.ones(()))
        self.ws = variant == "NF"
        self.beta = beta

    def _fc(self, layer: nn.Linear, x: Tensor) -> Tensor:
        if self.ws:
            return nn.functional.linear(x, scaled_standardize_weight(layer.weight), layer.bias)
        return layer(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.fixup:
            h = torch.relu(self.fc1(x + self.b[0]) + self.b[1])
            return self.fc2(h + self.b[2]) * self.scale
        if self.ws:  # NF-ResNets' pre-activation: f(relu(x / β))
            x = torch.relu(x / self.beta)
        h = self._fc(self.fc1, x)
        h = torch.relu(self.bn1(h) if self.bn1 is not None else h)
        h = self._fc(self.fc2, h)
        return self.bn2(h) if self.bn2 is not None else h


class _Residual(nn.Module):
    """``x + α·f(x)`` with a fixed α."""

    def __init__(self, branch: nn.Module, alpha: float = 1.0) -> None:
        super().__init__()
        self.branch, self.alpha = branch, alpha

    def forward(self, x: Tensor) -> Tensor:
        return x + self.alpha * self.branch(x)


class ResidualMLP(nn.Module):
    """Stem ``64 → width``, ``depth`` residual blocks of one ``variant``, classifier ``width → 10``.

    Weights are drawn from ``torch.Generator().manual_seed(seed)``.  Input
    ``(B, 64)`` (or ``(B, 1, 8, 8)``, flattened), logits ``(B, 10)``.

    Raises ``ValueError`` for an unknown variant or ``depth < 1``.
    """

    def __init__(self, depth: int, variant: str, width: int = 32, seed: int = 0, nf_alpha: float = 0.2) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"ResidualMLP: unknown variant {variant!r}; expected one of {VARIANTS}")
        if depth < 1:
            raise ValueError(f"ResidualMLP: depth must be >= 1, got {depth}")
        g = torch.Generator().manual_seed(seed)
        self.variant, self.depth = variant, depth
        self.stem = _linear(64, width, g)
        blocks = []
        expected_var = 1.0  # NF: the stream's variance, tracked analytically (Brock et al. 2021a)
        for _ in range(depth):
            if variant == "NF":
                branch = _Branch(width, variant, g, beta=math.sqrt(expected_var))
                blocks.append(_Residual(branch, nf_alpha))
                expected_var += nf_alpha**2
            elif variant == "SkipInit":
                blocks.append(SkipInit(_Branch(width, variant, g)))
            else:
                branch = _Branch(width, variant, g)
                if variant == "Fixup":
                    fixup_init_([branch.fc1, branch.fc2], num_branches=depth)
                blocks.append(_Residual(branch))
        self.blocks = nn.ModuleList(blocks)
        self.head = _linear(width, 10, g)
        if variant == "Fixup":  # Fixup also zeroes the classifier
            nn.init.zeros_(self.head.weight)

    def stream(self, x: Tensor) -> list[Tensor]:
        """The residual stream after the stem and after each block."""
        h = self.stem(x.flatten(1))
        out = [h]
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stream(x)[-1])


@one_thread()
def signal_through_depth(model: ResidualMLP, x: Tensor, y: Tensor) -> tuple[np.ndarray, float]:
    """At the current weights, in training mode: the std of the stream after each block, and
    the norm of the loss's gradient with respect to the stem's weight."""
    model.train()
    model.zero_grad(set_to_none=True)
    hs = model.stream(x)
    for h in hs:
        h.retain_grad()
    loss = nn.functional.cross_entropy(model.head(hs[-1]), y)
    loss.backward()
    stds = np.array([float(h.detach().std()) for h in hs])
    grad = float(model.stem.weight.grad.norm())
    model.zero_grad(set_to_none=True)
    return stds, grad


@one_thread()
def train_residual(
    model: ResidualMLP,
    data: Digits,
    steps: int = 150,
    batch_size: int = 64,
    lr: float = 0.02,
    momentum: float = 0.9,
    seed: int = 0,
    agc: float | None = None,
) -> float:
    """SGD with momentum (constant rate) for ``steps`` batches; returns the test error (%).

    A run whose loss overflows (is not finite) stops there and counts as
    100 % error: a network with non-finite outputs predicts nothing.
    ``agc`` clips every parameter but the classifier's with
    :func:`normlib.norm_free.adaptive_grad_clip_` at that ratio.
    """
    dtype = model.stem.weight.dtype
    x, y = data.x_train.flatten(1).to(dtype), data.y_train
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, fused=True)
    clipped = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    model.train()
    perm, k = torch.randperm(len(y), generator=g), 0
    for _ in range(steps):
        if k + batch_size > len(y):
            perm, k = torch.randperm(len(y), generator=g), 0
        idx = perm[k : k + batch_size]
        k += batch_size
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            return 100.0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if agc is not None:
            adaptive_grad_clip_(clipped, clipping=agc)
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(data.x_test.flatten(1).to(dtype))
    if not torch.isfinite(logits).all():
        return 100.0
    return 100.0 * float((logits.argmax(1) != data.y_test).double().mean())


@dataclass
class DepthSweep:
    """Test errors (%) ``errors[v, d, s]`` for variant v, depth d, seed s."""

    variants: list[str]
    depths: list[int]
    seeds: list[int]
    errors: np.ndarray

    def error(self, variant: str, depth: int) -> float:
        return float(self.errors[self.variants.index(variant), self.depths.index(depth)].mean())

    def deepest_trained(self, variant: str, threshold: float = 20.0) -> int | None:
        """The largest depth of the sweep up to which every depth trained (mean error < ``threshold``)."""
        ok = None
        for d in self.depths:
            if self.error(variant, d) >= threshold:
                break
            ok = d
        return ok


def depth_sweep(
    data: Digits,
    variants: Sequence[str] = VARIANTS,
    depths: Sequence[int] = (2, 8, 32),
    seeds: Sequence[int] = (0,),
    dtype: torch.dtype = torch.float64,
    agc: float = 0.1,
    **train_kw,
) -> DepthSweep:
    """Train every variant at every depth (and seed); NF runs with AGC at ratio ``agc``."""
    errors = np.zeros((len(variants), len(depths), len(seeds)))
    for i, v in enumerate(variants):
        for j, d in enumerate(depths):
            for k, s in enumerate(seeds):
                model = ResidualMLP(d, v, seed=s).to(dtype)
                errors[i, j, k] = train_residual(model, data, seed=s, agc=agc if v == "NF" else None, **train_kw)
    return DepthSweep(list(variants), list(depths), list(seeds), errors)
