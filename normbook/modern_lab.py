r"""Small models for the chapter on normalization in modern architectures.

Everything here is built from normlib's layers, small enough to train in a
second or two on a CPU core:

* :class:`TinyTransformer`: an encoder (token and position embeddings, ``layers``
  blocks of multi-head self-attention and an MLP, a linear head) whose norm is
  placed after the residual sum (``placement="post"``, Vaswani et al. 2017) or at
  the entrance of each branch (``"pre"``, Xiong et al. 2020), of kind ``"layer"``,
  ``"rms"`` or ``"dyt"``, with optional QK-norm and an optional final norm.
* :func:`sort_task`: the synthetic task, a batch of token sequences and the same
  tokens sorted (every output position must look at the whole input).
* :func:`train`: Adam with optional linear warm-up; returns a :class:`History` of
  losses, the largest attention logit and the attention entropy per step.
* :func:`block_grad_norms`, :func:`stream_rms`: the two measurements at
  initialisation (gradient norm per block, the residual stream's scale per block).
* :func:`step_closure`: one training step as a callable, for timing.
* :func:`conditional_task`, :func:`train_conditional`: a toy task in which a class
  label must steer a normalization's output (conditional norm / adaLN).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from normlib.adaptive_norm import AdaptiveNorm
from normlib.dynamic_tanh import DyT
from normlib.nn import GroupNorm, LayerNorm
from normlib.rms import RMSNorm

__all__ = [
    "NORMS", "make_norm", "Block", "TinyTransformer", "build", "sort_task", "History", "train",
    "block_grad_norms", "stream_rms", "step_closure", "conditional_task", "train_conditional",
]

#: The task's size: sequences of LENGTH tokens from VOCAB values, BATCH sequences per step.
LENGTH, VOCAB, BATCH = 8, 16, 16

#: The norm kinds a :class:`TinyTransformer` can use (normlib's, and torch's for checks).
NORMS = ("layer", "rms", "dyt", "torch-layer", "torch-rms")


def make_norm(kind: str, d: int) -> nn.Module:
    """A norm over the last axis of width ``d``: normlib's LayerNorm/RMSNorm/DyT or torch's."""
    if kind == "layer":
        return LayerNorm(d)
    if kind == "rms":
        return RMSNorm(d, eps=1e-6)
    if kind == "dyt":
        return DyT(d)
    if kind == "torch-layer":
        return nn.LayerNorm(d)
    if kind == "torch-rms":
        return nn.RMSNorm(d, eps=1e-6)
    raise ValueError(f"make_norm: kind must be one of {NORMS}, got {kind!r}")


class Block(nn.Module):
    """One encoder block: self-attention then an MLP, each with a residual connection.

    ``placement="post"``: ``x = norm(x + f(x))`` (the original transformer);
    ``"pre"``: ``x = x + f(norm(x))``.  With ``qk_norm`` the queries and keys of
    each head go through a LayerNorm over the head's ``d/heads`` features before
    their dot products (Dehghani et al. 2023).  After a forward pass
    ``self.max_logit`` and ``self.entropy`` hold the largest attention logit
    and the mean entropy of the attention rows (in nats), without gradient.
    """

    def __init__(self, d: int, heads: int, placement: str, norm: str, qk_norm: bool = False) -> None:
        super().__init__()
        if placement not in ("pre", "post"):
            raise ValueError(f"Block: placement must be 'pre' or 'post', got {placement!r}")
        if d % heads:
            raise ValueError(f"Block: width d={d} must be divisible by heads={heads}")
        self.placement, self.heads = placement, heads
        self.norm1, self.norm2 = make_norm(norm, d), make_norm(norm, d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        dh = d // heads
        self.q_norm = make_norm(norm, dh) if qk_norm else None  # the model's own kind of norm
        self.k_norm = make_norm(norm, dh) if qk_norm else None
        for lin in (self.qkv, self.proj, self.fc1, self.fc2):  # Xavier, as Vaswani et al. and Xiong et al.
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.max_logit = self.entropy = float("nan")

    def attention(self, h: Tensor) -> Tensor:
        n, length, d = h.shape
        q, k, v = self.qkv(h).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        att = logits.softmax(dim=-1)
        with torch.no_grad():
            self.max_logit = float(logits.abs().max())
            self.entropy = float(-(att * att.clamp_min(1e-30).log()).sum(-1).mean())
        return self.proj((att @ v).transpose(1, 2).reshape(n, length, d))

    def mlp(self, h: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(h)))

    def forward(self, x: Tensor) -> Tensor:
        if self.placement == "post":
            x = self.norm1(x + self.attention(x))
            return self.norm2(x + self.mlp(x))
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """A transformer encoder for token-to-token tasks (one output per input position).

    Args:
        vocab: number of token values; length: sequence length (learned positions).
        d: width; layers: number of blocks; heads: attention heads.
        placement: ``"pre"`` or ``"post"``; norm: one of :data:`NORMS`.
        qk_norm: normalize queries and keys per head.
        final_norm: for ``"pre"``, a norm between the last block and the head
            (Post-LN ends every block with one and gets none).

    ``forward(tokens)`` maps ``(N, length)`` integer tokens to ``(N, length, vocab)``
    logits; ``forward(tokens, streams=True)`` also returns the residual stream
    after the embedding and after each block (a list of ``layers + 1`` tensors).
    """

    def __init__(self, vocab: int = VOCAB, length: int = LENGTH, d: int = 32, layers: int = 6, heads: int = 4,
                 placement: str = "pre", norm: str = "layer", qk_norm: bool = False,
                 final_norm: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.02)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.blocks = nn.ModuleList(Block(d, heads, placement, norm, qk_norm) for _ in range(layers))
        self.final = make_norm(norm, d) if (final_norm and placement == "pre") else nn.Identity()
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens: Tensor, streams: bool = False):
        x = self.embed(tokens) + self.pos
        seen = [x.detach()]
        for blk in self.blocks:
            x = blk(x)
            seen.append(x.detach())
        logits = self.head(self.final(x))
        return (logits, seen) if streams else logits


def build(seed: int = 0, **kwargs) -> TinyTransformer:
    """A float64 :class:`TinyTransformer` (``kwargs``) initialised from ``torch.manual_seed(seed)``.

    float64 so that a training run's printed figures do not depend on the
    arithmetic path (fused kernels or not, one thread or two): rounding
    differences of 1e-16 stay far below the digits printed.
    """
    torch.manual_seed(seed)
    return TinyTransformer(**kwargs).double()


def sort_task(batch: int, length: int, vocab: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch`` sequences of ``length`` random tokens in ``[0, vocab)``, and each sorted.

    Returns ``(tokens, targets)``, both ``(batch, length)`` int64; equal generator
    states give equal batches.
    """
    x = torch.randint(0, vocab, (batch, length), generator=generator)
    return x, x.sort(dim=1).values


class History(NamedTuple):
    """Per-step records of :func:`train` (lists of floats, one entry per step)."""

    loss: list[float]
    max_logit: list[float]  # the largest |attention logit| over all blocks
    entropy: list[float]    # the smallest mean attention entropy over blocks (nats)

    def final_loss(self, last: int = 20) -> float:
        """Mean loss over the last ``last`` steps (less noisy than the last step)."""
        tail = self.loss[-last:]
        return sum(tail) / len(tail)


def train(model: TinyTransformer, steps: int, lr: float, *, warmup: int = 0, batch: int = BATCH,
          length: int = LENGTH, vocab: int = VOCAB, seed: int = 0, betas=(0.9, 0.98)) -> History:
    """Adam on :func:`sort_task` for ``steps`` steps; returns the :class:`History`.

    The learning rate rises linearly from ``lr/warmup`` to ``lr`` over ``warmup``
    steps (none when ``warmup=0``), then stays.  Data come from a generator
    seeded with ``seed``: two calls with equal models and arguments see equal
    batches.  A non-finite loss ends training early (the rest of the history is
    padded with ``nan``).
    """
    if steps < 1 or not lr > 0:
        raise ValueError(f"train: need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, fused=True)  # one C loop
    hist = History([], [], [])
    model.train()
    for step in range(steps):
        if warmup:
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / warmup)
        x, y = sort_task(batch, length, vocab, gen)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab).to(dtype), y.reshape(-1))
        hist.loss.append(float(loss.detach()))
        hist.max_logit.append(max(b.max_logit for b in model.blocks))
        hist.entropy.append(min(b.entropy for b in model.blocks))
        if not math.isfinite(hist.loss[-1]):
            pad = steps - len(hist.loss)
            for lst in hist:
                lst.extend([float("nan")] * pad)
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return hist


def block_grad_norms(model: TinyTransformer, batch: int = 64, length: int = LENGTH, vocab: int = VOCAB,
                     seed: int = 0) -> list[float]:
    """Gradient norm of each block's weight matrices at the model's current parameters.

    One batch of :func:`sort_task`, cross-entropy loss, one backward; for block
    ``i`` the Euclidean norm of the gradients of its four linear layers' weights
    (attention ``qkv`` and ``proj``, MLP ``fc1`` and ``fc2``) taken together.
    Gradients are cleared before and after.
    """
    gen = torch.Generator().manual_seed(seed)
    x, y = sort_task(batch, length, vocab, gen)
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
    loss.backward()
    norms = []
    for blk in model.blocks:
        sq = sum(float(m.weight.grad.pow(2).sum()) for m in (blk.qkv, blk.proj, blk.fc1, blk.fc2))
        norms.append(math.sqrt(sq))
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def stream_rms(model: TinyTransformer, batch: int = 64, length: int = LENGTH, vocab: int = VOCAB,
               seed: int = 0) -> list[float]:
    """Root mean square of the residual stream after the embedding and after each block."""
    gen = torch.Generator().manual_seed(seed)
    x, _ = sort_task(batch, length, vocab, gen)
    _, seen = model(x, streams=True)
    return [float(s.pow(2).mean().sqrt()) for s in seen]


def step_closure(model: nn.Module, batch: int = BATCH, length: int = LENGTH, vocab: int = VOCAB):
    """A callable that runs one forward + backward + Adam step of ``model`` on a fixed batch (for timing)."""
    gen = torch.Generator().manual_seed(0)
    x, y = sort_task(batch, length, vocab, gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# ---------------------------------------------------------------------------
# Conditional normalization: a class label steers the output's statistics.
# ---------------------------------------------------------------------------
def conditional_task(n: int, classes: int = 4, channels: int = 8, size: int = 6,
                     seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Inputs, one-hot conditions and targets whose per-channel statistics depend on the class.

    Each class ``k`` has a per-channel scale ``s_k`` and shift ``t_k`` (drawn
    once from the seed); the target of an input ``x`` of class ``k`` is
    ``instance_norm(x) · s_k + t_k``: the same content, the class's statistics.
    Returns ``(x, cond, target, s, t)`` with ``x, target`` of shape
    ``(n, channels, size, size)``, ``cond`` ``(n, classes)`` and ``s, t``
    ``(classes, channels)``.
    """
    gen = torch.Generator().manual_seed(seed)
    s = 0.5 + 1.5 * torch.rand(classes, channels, generator=gen, dtype=torch.float64)
    t = 2.0 * torch.randn(classes, channels, generator=gen, dtype=torch.float64)
    x = 3.0 * torch.randn(n, channels, size, size, generator=gen, dtype=torch.float64) + 1.0
    k = torch.randint(0, classes, (n,), generator=gen)
    cond = nn.functional.one_hot(k, classes).to(torch.float64)
    x_hat = nn.functional.instance_norm(x, eps=1e-5)
    target = x_hat * s[k][:, :, None, None] + t[k][:, :, None, None]
    return x, cond, target, s, t


def train_conditional(model: nn.Module, x: Tensor, cond: Tensor, target: Tensor, steps: int = 150,
                      lr: float = 0.05) -> list[float]:
    """Full-batch Adam on the mean squared error; ``model(x, cond)`` → output. Returns the losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x, cond), target)
        losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return losses


class ConditionedNet(nn.Module):
    """A 1×1 convolution then a conditional norm: ``AdaptiveNorm(conv(x), cond)``.

    With ``conditioned=False`` the condition is ignored and the norm is a
    Group Norm with ordinary learned affine parameters (the baseline: one γ,
    β for every class).
    """

    def __init__(self, channels: int, classes: int, norm: str = "instance", conditioned: bool = True,
                 zero_init: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.conditioned = conditioned
        if conditioned:
            self.norm = AdaptiveNorm(channels, classes, norm=norm, zero_init=zero_init)
        else:
            self.norm = GroupNorm(channels, channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv(x)
        return self.norm(h, cond) if self.conditioned else self.norm(h)


__all__ += ["ConditionedNet"]
