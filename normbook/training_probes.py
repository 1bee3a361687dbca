r"""Looking inside a network while it trains: activations per layer, and the loss along a step.

* :func:`record_activations` runs a forward pass and returns the output of every layer of
  the chosen types (forward hooks, removed afterwards).
* :func:`train_sgd` is a plain, deterministic minibatch SGD loop.
* :func:`loss_along_gradient` measures how the loss and the gradient change along the
  gradient direction, :math:`L(\mathbf w - \eta\,\mathbf g)` for a range of :math:`\eta`
  (the measurement of Santurkar et al., 2018), without changing the model.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["record_activations", "train_sgd", "StepProbe", "loss_along_gradient"]


@torch.no_grad()
def record_activations(model: nn.Module, x: Tensor, types: tuple[type, ...] = (nn.ReLU,)) -> dict[str, Tensor]:
    """Outputs of every submodule of one of ``types``, in forward order, for input ``x``.

    Returns ``{qualified module name: output tensor (detached)}``.  The model runs in
    whatever mode it is in (call ``model.eval()`` first to leave BN's running statistics
    alone).  Raises ``ValueError`` if no submodule has one of ``types``.
    """
    out: dict[str, Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, types):
            handles.append(mod.register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o.detach().clone())))
    if not handles:
        raise ValueError(f"record_activations: the model has no submodule of type {[t.__name__ for t in types]}")
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return out


def train_sgd(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
              lr: float, steps: int, batch_size: int = 64, seed: int = 0) -> list[float]:
    """``steps`` steps of minibatch SGD (no momentum); returns the minibatch losses.

    Minibatches are drawn without replacement from a permutation of ``x`` made by a
    ``torch.Generator`` seeded with ``seed`` (a new permutation each epoch), so two calls
    with equal arguments on equal models give equal results.  The model is left in
    training mode.  Raises ``ValueError`` for ``lr <= 0``, ``steps < 0`` or a batch size
    outside ``[1, len(x)]``.
    """
    n = int(x.shape[0])
    if not lr > 0:
        raise ValueError(f"train_sgd: lr must be > 0, got lr={lr}")
    if steps < 0:
        raise ValueError(f"train_sgd: steps must be >= 0, got steps={steps}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"train_sgd: batch_size must be in [1, {n}] for {n} samples, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


class StepProbe(NamedTuple):
    """What :func:`loss_along_gradient` measures at one point ``w`` of training."""

    etas: np.ndarray          # step sizes η, shape (k,)
    loss: np.ndarray          # L(w − η g), shape (k,)
    grad_change: np.ndarray   # ||∇L(w − η g) − ∇L(w)||, shape (k,)
    grad_norm: float          # ||g|| = ||∇L(w)||


def _flat_grad(model: nn.Module, params: Sequence[nn.Parameter]) -> Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def loss_along_gradient(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                        etas: Sequence[float]) -> StepProbe:
    r"""The loss and gradient at :math:`\mathbf w - \eta\,\mathbf g` for each step size :math:`\eta`.

    ``g`` is the gradient of ``loss_fn(model(x), y)`` at the current parameters ``w``
    (all parameters that require grad, flattened).  Every evaluation uses the same batch
    and the model's current mode; the parameters, their ``.grad`` and every buffer (BN's
    running statistics) are restored afterwards, so the model is unchanged.

    Returns a :class:`StepProbe`.  Raises ``ValueError`` for an empty ``etas`` or a model
    without trainable parameters.
    """
    etas = np.asarray(list(etas), dtype=np.float64)
    if etas.size == 0:
        raise ValueError("loss_along_gradient: etas must not be empty")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("loss_along_gradient: the model has no trainable parameters")
    saved_params = [p.detach().clone() for p in params]
    saved_grads = [None if p.grad is None else p.grad.clone() for p in params]
    saved_buffers = {k: v.clone() for k, v in model.named_buffers()}

    def grad_at() -> tuple[float, Tensor]:
        for p in params:
            p.grad = None
        loss = loss_fn(model(x), y)
        loss.backward()
        return float(loss.detach()), _flat_grad(model, params)

    try:
        _, g = grad_at()
        losses, changes = np.empty(etas.size), np.empty(etas.size)
        for i, eta in enumerate(etas):
            with torch.no_grad():
                for p, p0, gp in zip(params, saved_params, torch.split(g, [p.numel() for p in params])):
                    p.copy_(p0 - eta * gp.reshape(p.shape))
            losses[i], g_eta = grad_at()
            changes[i] = float(torch.linalg.vector_norm(g_eta - g))
    finally:
        with torch.no_grad():
            for p, p0, g0 in zip(params, saved_params, saved_grads):
                p.copy_(p0)
                p.grad = g0
            for k, v in model.named_buffers():
                v.copy_(saved_buffers[k])
    return StepProbe(etas, losses, changes, float(torch.linalg.vector_norm(g)))
