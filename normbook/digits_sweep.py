"""The batch-size experiment of Wu and He (2018), reproduced small on the digits data.

Everything the chapter on batch size needs and that is too long for a cell:

* :func:`load_digits_split`: scikit-learn's 8×8 handwritten digits (offline),
  a fixed, stratified train/test split, standardized with the training set's
  mean and standard deviation.
* :class:`StackedCNN`: many copies of one small CNN trained *as one model*.
  Every copy (one per normalization method and seed) owns a contiguous block of
  channels; the convolutions are grouped convolutions (``groups`` = number of
  copies), so no copy sees another's channels.  This works for every
  normalizer of the book because each one normalizes within a block:
  Batch Norm and Instance Norm per channel, Group Norm within groups of
  contiguous channels (a copy's ``g`` groups are ``g`` of the stack's
  ``copies·g``), and Layer Norm over (C, H, W) of one copy is Group Norm with
  one group per copy.  The layers are :mod:`normlib.nn` modules.
* :func:`train_stack`: SGD with momentum over a fixed number of epochs; the
  learning rate is scaled linearly with the batch size.  The loss is the sum of
  the copies' losses, so each copy's gradient is exactly its own.
* :func:`batch_stat_noise`: how much the mean and variance of a batch scatter
  around the population's, against the batch size.
* :data:`WU_HE_2018`: the numbers of the paper the chapter compares with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from normlib import nn as nnn

from .timing import one_thread  # the experiments run on one thread (see its docstring)

__all__ = [
    "WU_HE_2018",
    "WU_HE_2018_BATCH32",
    "Digits",
    "load_digits_split",
    "make_norm",
    "StackedNorm",
    "StackedCNN",
    "SweepResult",
    "train_stack",
    "run_sweep",
    "batch_stat_noise",
    "with_population_stats",
    "evaluate_in_batches",
    "evaluate",
    "stack_input",
    "fork_map",
    "one_thread",
]

#: ResNet-50 top-1 ImageNet validation error (%) against images per worker,
#: Wu and He (2018), their batch-size table (drawn as their Figure 1).  At batch 32
#: the paper's comparison of the four normalizers also has LN 25.3 and IN 28.4.
WU_HE_2018: dict[str, dict[int, float]] = {
    "BN": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "GN": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
}

#: The same paper's comparison of all four normalizers at 32 images per worker.
WU_HE_2018_BATCH32: dict[str, float] = {"BN": 23.6, "LN": 25.3, "IN": 28.4, "GN": 24.1}

METHODS = ("BN", "GN", "LN", "IN", "WS+GN")
_NORM_OF = {"BN": "BN", "GN": "GN", "LN": "LN", "IN": "IN", "WS+GN": "GN"}  # the activation norm of each method


@dataclass(frozen=True)
class Digits:
    """A fixed split of the digits: images ``(n, 1, 8, 8)`` float32, labels ``(n,)`` int64."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(n_train: int = 1024, seed: int = 0) -> Digits:
    """The 1797 scikit-learn digits, split stratified into ``n_train`` training and the rest test.

    ``n_train = 1024`` is divisible by every batch size of the sweep (2 … 32),
    so every epoch has the same number of samples at every batch size.
    Pixels are standardized with the training set's mean and standard
    deviation (one scalar each).

    Raises ``ValueError`` if ``n_train`` leaves fewer than 10 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    n = len(data.target)
    if not 10 <= n_train <= n - 10:
        raise ValueError(f"load_digits_split: n_train must be in [10, {n - 10}], got {n_train}")
    x = data.images.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(
        x, data.target, train_size=n_train, stratify=data.target, random_state=seed
    )
    mu, sd = xtr.mean(), xtr.std()
    f = lambda a: torch.from_numpy(((a - mu) / sd).astype(np.float32)).unsqueeze(1)  # noqa: E731
    return Digits(f(xtr), torch.from_numpy(ytr.astype(np.int64)), f(xte), torch.from_numpy(yte.astype(np.int64)))


def make_norm(method: str, copies: int, channels: int, channels_per_group: int = 4) -> nn.Module:
    """One :mod:`normlib.nn` layer that normalizes ``copies`` blocks of ``channels`` independently.

    ``BN`` → ``BatchNorm2d(copies·C)``; ``IN`` → ``InstanceNorm2d(copies·C, affine=True)``;
    ``GN`` and ``WS+GN`` → ``GroupNorm(copies·C/channels_per_group, copies·C)``;
    ``LN`` → ``GroupNorm(copies, copies·C)`` (Layer Norm over (C, H, W) with a
    per-channel affine, the Layer Norm of Wu and He's comparison).

    Raises ``ValueError`` for an unknown method or ``channels`` not divisible by
    ``channels_per_group``.
    """
    total = copies * channels
    if method == "BN":
        return nnn.BatchNorm2d(total)
    if method == "IN":
        return nnn.InstanceNorm2d(total, affine=True)
    if method == "LN":
        return nnn.GroupNorm(copies, total)
    if method in ("GN", "WS+GN"):
        if channels % channels_per_group:
            raise ValueError(
                f"make_norm: channels={channels} is not divisible by channels_per_group={channels_per_group}"
            )
        return nnn.GroupNorm(total // channels_per_group, total)
    raise ValueError(f"make_norm: unknown method {method!r}; expected one of {METHODS}")


class StackedNorm(nn.Module):
    """Several methods side by side: channel block ``k`` of the input goes to ``norms[k]``."""

    def __init__(self, norms: Sequence[nn.Module], sizes: Sequence[int]) -> None:
        super().__init__()
        self.norms = nn.ModuleList(norms)
        self.sizes = list(sizes)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.norms) == 1:
            return self.norms[0](x)
        # each block contiguous, so that the fused kernels (normlib.fused) take it
        return torch.cat([m(part.contiguous()) for m, part in zip(self.norms, x.split(self.sizes, dim=1))], dim=1)


class StackedCNN(nn.Module):
    """``len(methods) × len(seeds)`` copies of a 3-layer CNN for 8×8 images, as one module.

    One copy: conv 3×3 (1→16) at 8×8, norm, ReLU; conv 3×3 stride 2 (16→32) at
    4×4, norm, ReLU; conv 3×3 stride 2 (32→32) at 2×2, norm, ReLU; global
    average pool; linear 32→10.  Convolutions have no bias (the norm's β plays
    that role).  Copy ``k = m·len(seeds) + s`` has method ``methods[m]`` and
    its weights are drawn from ``torch.Generator().manual_seed(seeds[s])``, so
    copies with the same seed start from the same weights whatever their method.
    ``WS+GN`` copies standardize their convolution weights
    (:func:`normlib.weight_standardization.standardize_weight`, applied only to
    their rows of the stacked weight).  Neighbouring methods with the same
    activation norm (``GN`` next to ``WS+GN``) share one norm layer per depth:
    the same per-group arithmetic, one call instead of two.

    Input ``(B, copies, 8, 8)`` (copy ``k`` reads channel ``k``); output
    logits ``(B, copies, 10)``.
    """

    def __init__(
        self,
        methods: Sequence[str],
        seeds: Sequence[int],
        channels_per_group: int = 4,
        widths: Sequence[int] = (16, 32, 32),
        strides: Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        self.widths, self.strides = tuple(widths), tuple(strides)
        from normlib.weight_standardization import standardize_weight

        self._standardize = standardize_weight
        self.methods = list(methods)
        self.seeds = list(seeds)
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"StackedCNN: unknown method {m!r}; expected one of {METHODS}")
        M, S = len(self.methods), len(self.seeds)
        self.copies = K = M * S
        cin = (1,) + self.widths[:-1]
        self.weights = nn.ParameterList()
        self.norms = nn.ModuleList()
        for c_in, c_out in zip(cin, self.widths):
            w = torch.empty(K, c_out, c_in, 3, 3)
            for k in range(K):
                g = torch.Generator().manual_seed(int(self.seeds[k % S]) * 1000 + c_out * 10 + c_in)
                # Kaiming-normal for ReLU: std = sqrt(2 / fan_in)
                w[k] = torch.randn(c_out, c_in, 3, 3, generator=g) * math.sqrt(2.0 / (c_in * 9))
            self.weights.append(nn.Parameter(w.reshape(K * c_out, c_in, 3, 3)))
            # Neighbouring methods with the same normalization layer (GN and WS+GN) share one
            # layer over both blocks: one call instead of two, the same arithmetic per block.
            runs = self._runs([_NORM_OF[m] for m in self.methods])
            self.norms.append(
                StackedNorm(
                    [make_norm(self.methods[a], S * (b - a), c_out, channels_per_group) for a, b in runs],
                    [S * (b - a) * c_out for a, b in runs],
                )
            )
        c = self.widths[-1]
        fc = torch.empty(K, c, 10)
        for k in range(K):
            g = torch.Generator().manual_seed(int(self.seeds[k % S]) * 1000 + 7)
            fc[k] = (torch.rand(c, 10, generator=g) * 2 - 1) / math.sqrt(c)
        self.fc_weight = nn.Parameter(fc)
        self.fc_bias = nn.Parameter(torch.zeros(K, 10))
        self.ws_mask = torch.tensor([m == "WS+GN" for m in self.methods]).repeat_interleave(S)
        # Runs of consecutive methods that are (or are not) weight-standardized, in copies.
        self._ws_runs = [(a * S, b * S, self.methods[a] == "WS+GN") for a, b in self._runs(
            [m == "WS+GN" for m in self.methods])]

    @staticmethod
    def _runs(keys: Sequence) -> list[tuple[int, int]]:
        """Maximal runs ``[a, b)`` of equal consecutive ``keys``."""
        runs, a = [], 0
        for b in range(1, len(keys) + 1):
            if b == len(keys) or keys[b] != keys[a]:
                runs.append((a, b))
                a = b
        return runs

    def conv_weight(self, i: int) -> Tensor:
        """The weight convolution ``i`` uses: standardized for the ``WS+GN`` copies.

        Only the rows of the ``WS+GN`` copies are standardized (one call per
        contiguous run of them); the other rows are the raw weight.
        """
        w = self.weights[i]
        if not bool(self.ws_mask.any()):
            return w
        c_out = self.widths[i]
        parts = [self._standardize(w[a * c_out : b * c_out]) if ws else w[a * c_out : b * c_out]
                 for a, b, ws in self._ws_runs]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @staticmethod
    def activation(x: Tensor) -> Tensor:
        """What follows each norm layer: a ReLU (a subclass whose layers include their own
        activation, as :class:`normbook.small_batch.SmallBatchCNN`, makes this the identity)."""
        return torch.relu(x)

    def features(self, x: Tensor) -> list[Tensor]:
        """Outputs of each norm layer (before :meth:`activation`), for the mechanism measurements."""
        out = []
        for i, norm in enumerate(self.norms):
            x = nn.functional.conv2d(x, self.conv_weight(i), stride=self.strides[i], padding=1, groups=self.copies)
            x = norm(x)
            out.append(x)
            x = self.activation(x)
        return out

    def pre_norm(self, x: Tensor, layer: int) -> Tensor:
        """The input of norm layer ``layer`` (the convolution's output), shape ``(B, copies·C, H, W)``."""
        for i in range(layer + 1):
            x = nn.functional.conv2d(x, self.conv_weight(i), stride=self.strides[i], padding=1, groups=self.copies)
            if i < layer:
                x = self.activation(self.norms[i](x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.copies:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape [B, {self.copies}, H, W], got {list(x.shape)}"
            )
        h = self.activation(self.features(x)[-1])
        h = h.mean(dim=(2, 3)).view(x.shape[0], self.copies, -1)  # (B, K, C)
        return torch.einsum("bkc,kco->bko", h, self.fc_weight) + self.fc_bias


@dataclass
class SweepResult:
    """Test errors (%) of a sweep: ``errors[b, m, s]`` for batch size b, method m, seed s."""

    batch_sizes: list[int]
    methods: list[str]
    seeds: list[int]
    errors: np.ndarray
    models: dict[int, StackedCNN] = field(default_factory=dict, repr=False)

    def mean(self) -> np.ndarray:
        return self.errors.mean(axis=2)

    def std(self) -> np.ndarray:
        return self.errors.std(axis=2, ddof=1) if len(self.seeds) > 1 else np.zeros(self.errors.shape[:2])

    def error(self, method: str, batch_size: int) -> float:
        """Mean test error (%) over seeds of one method at one batch size."""
        return float(self.mean()[self.batch_sizes.index(batch_size), self.methods.index(method)])

    def spread(self, method: str, batch_size: int) -> float:
        """Standard deviation over seeds (``ddof=1``; 0 for one seed) of one method at one batch size."""
        return float(self.std()[self.batch_sizes.index(batch_size), self.methods.index(method)])

    def max_spread(self) -> float:
        """The largest spread over seeds in the table: the margin claims must beat."""
        return float(self.std().max())


def stack_input(x: Tensor, order: Tensor, repeats: int) -> Tensor:
    """Batches of several seeds side by side: ``x[order[s]]`` for each seed, tiled ``repeats`` times.

    ``x`` is ``(n, 1, H, W)``, ``order`` is ``(S, B)`` indices; the result is
    ``(B, repeats·S, H, W)`` with channel ``m·S + s`` holding seed ``s``'s batch.
    """
    xb = x[order, 0]  # (S, B, H, W)
    return xb.transpose(0, 1).repeat(1, repeats, 1, 1)


@one_thread()
@torch.no_grad()
def evaluate(model: StackedCNN, x: Tensor, y: Tensor) -> np.ndarray:
    """Test error (%) of every copy, in eval mode (BN uses its running statistics)."""
    was = model.training
    model.eval()
    logits = model(x.expand(-1, model.copies, -1, -1))
    model.train(was)
    wrong = (logits.argmax(-1) != y[:, None]).float().mean(0)
    return (100.0 * wrong).numpy()


def train_stack(
    model: StackedCNN,
    data: Digits,
    batch_size: int,
    epochs: int = 4,
    lr_at_32: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    on_step: Callable[[], None] | None = None,
) -> np.ndarray:
    """Train every copy of ``model`` with SGD and return its test errors (%), shape ``(copies,)``.

    ``epochs`` passes over the training set at every batch size (so a smaller
    batch takes proportionally more steps); learning rate
    ``lr_at_32 · batch_size / 32`` (the linear scaling rule), cosine-decayed to
    0 over the run.  Seed ``s`` draws its sample order from
    ``torch.Generator().manual_seed(seeds[s])``; all methods with the same seed
    see the same batches.  ``on_step`` is called after each optimizer step
    (for a progress bar).

    Raises ``ValueError`` if ``batch_size`` does not divide the training set.
    """
    n = len(data.y_train)
    if batch_size < 1 or n % batch_size:
        raise ValueError(f"train_stack: batch_size={batch_size} must divide the {n} training images")
    M = len(model.methods)
    gens = [torch.Generator().manual_seed(int(s)) for s in model.seeds]
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    lr0 = lr_at_32 * batch_size / 32
    # fused: one C loop over all parameters (a third of the foreach version's time on this
    # step's 29 small tensors); the same update, rounded in its own order
    opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=momentum, weight_decay=weight_decay, fused=True)
    model.train()
    step = 0
    for _ in range(epochs):
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (S, n)
        # The whole epoch's inputs and labels at once, cut into batches below (one gather per epoch).
        x_epoch = stack_input(data.x_train, perm, M)  # (n, K, H, W)
        y_epoch = data.y_train[perm].T.repeat(1, M)  # (n, K)
        for k in range(steps_per_epoch):
            xb = x_epoch[k * batch_size : (k + 1) * batch_size]
            yb = y_epoch[k * batch_size : (k + 1) * batch_size]  # (B, K)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits.reshape(-1, 10), yb.reshape(-1), reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / batch_size).backward()
            for group in opt.param_groups:
                group["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.step()
            step += 1
            if on_step is not None:
                on_step()
    return evaluate(model, data.x_test, data.y_test)


_WORK: list = []  # fork_map's (function, argument) pairs, inherited by its forked workers (not pickled)


def _run_work(index: int):
    fn, arg = _WORK[index]
    return fn(arg)


def fork_map(fn: Callable, args: Sequence, processes: int = 1, order: Sequence[int] | None = None):
    """Yield ``(i, fn(args[i]))`` for each ``i`` of ``order`` (default: in turn), in that order.

    With ``processes > 1`` the calls run in that many forked worker processes,
    which inherit ``fn`` and ``args`` (nothing is pickled on the way in); the
    results come back pickled, so they should be NumPy arrays or plain Python
    values: torch would hand tensors over through shared memory and file
    descriptors, which a forked worker of a Jupyter kernel can wait on for ever.
    Where ``fork`` is not available (Windows) or there is one call, the calls
    run here, one after another.  Put the longest calls first in ``order``.
    """
    import multiprocessing as mp

    order = list(range(len(args))) if order is None else list(order)
    if processes <= 1 or len(order) <= 1 or "fork" not in mp.get_all_start_methods():
        for i in order:
            yield i, fn(args[i])
        return
    _WORK[:] = [(fn, a) for a in args]  # before the fork: the workers read their job from their copy
    try:
        with mp.get_context("fork").Pool(min(processes, len(order))) as pool:
            yield from zip(order, pool.imap(_run_work, order, chunksize=1))
    finally:
        _WORK.clear()


def _train_one(job: tuple) -> tuple[np.ndarray, dict | None]:
    """One batch size of :func:`run_sweep` (in a worker process): test errors, and the weights if kept."""
    methods, seeds, arch, data, b, epochs, train_kw, keep = job
    with one_thread():
        model = StackedCNN(methods, seeds, **(arch or {}))
        err = train_stack(model, data, b, epochs, **train_kw)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()} if keep else None
    return err, state


def run_sweep(
    data: Digits,
    methods: Sequence[str] = ("BN", "GN", "LN", "IN"),
    batch_sizes: Sequence[int] = (32, 16, 8, 4, 2),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 4,
    progress: bool = True,
    keep_models: Iterable[int] = (),
    arch: dict | None = None,
    processes: int = 1,
    **train_kw,
) -> SweepResult:
    """Train one :class:`StackedCNN` (all methods × seeds) per batch size; collect test errors.

    Returns a :class:`SweepResult` with ``errors`` of shape
    ``(len(batch_sizes), len(methods), len(seeds))``; the stacks of the batch
    sizes in ``keep_models`` are kept in ``result.models``.  ``progress`` shows
    a tqdm bar over all optimizer steps.

    Each stack trains on **one** thread (see :class:`one_thread`).  With
    ``processes > 1`` the batch sizes are trained in that many forked worker
    processes, the one with the most steps first, one thread each (on a
    machine with that many idle cores, that much less wall time).  Every
    stack is trained by the same code on one thread either way, so the
    results are bitwise the same as with ``processes=1``; the bar then moves
    once per finished batch size.  Where ``fork`` is not available (Windows,
    or a platform where it is not a start method) the sweep runs in this process.
    """
    n = len(data.y_train)
    for b in batch_sizes:
        if b < 1 or n % b:
            raise ValueError(f"run_sweep: batch size {b} must divide the {n} training images")
    total = sum(epochs * (n // b) for b in batch_sizes)
    bar = None
    if progress:
        import sys

        from tqdm.std import tqdm  # plain text: renders the same in a terminal, a notebook and the book

        bar = tqdm(total=total, desc="optimizer steps", mininterval=5.0, ncols=80, file=sys.stdout)
    keep = set(keep_models)
    errors = np.zeros((len(batch_sizes), len(methods), len(seeds)))
    models: dict[int, StackedCNN] = {}
    parallel = processes > 1 and len(batch_sizes) > 1
    try:
        if parallel:
            jobs = [(tuple(methods), tuple(seeds), arch, data, b, epochs, train_kw, b in keep)
                    for b in batch_sizes]
            order = sorted(range(len(batch_sizes)), key=lambda i: batch_sizes[i])  # most steps first
            for i, (err, state) in fork_map(_train_one, jobs, processes, order):
                b = batch_sizes[i]
                errors[i] = err.reshape(len(methods), len(seeds))
                if state is not None:
                    models[b] = StackedCNN(methods, seeds, **(arch or {}))
                    models[b].load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
                if bar is not None:
                    bar.update(epochs * (n // b))
        else:
            with one_thread():
                for i, b in enumerate(batch_sizes):
                    model = StackedCNN(methods, seeds, **(arch or {}))
                    on_step = (lambda: bar.update(1)) if bar else None
                    err = train_stack(model, data, b, epochs, on_step=on_step, **train_kw)
                    errors[i] = err.reshape(len(methods), len(seeds))
                    if b in keep:
                        models[b] = model
    finally:
        if bar is not None:
            bar.close()
    return SweepResult(list(batch_sizes), list(methods), list(seeds), errors, models)


@one_thread()
def batch_stat_noise(
    x: Tensor, batch_sizes: Sequence[int], n_batches: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter of Batch Norm's statistics over random batches, against the batch size.

    ``x`` is a set of activations ``(n, C, H, W)`` (the population).  For each
    batch size ``b``, draw ``n_batches`` batches of ``b`` samples without
    replacement, take each channel's batch mean and (biased) batch variance over
    ``(b, H, W)``, and measure their standard deviation across the batches,
    relative to the population's standard deviation (for the mean) and
    variance (for the variance), averaged over channels.

    Returns ``(mean_noise, var_noise)``, each of shape ``(len(batch_sizes),)``.
    For independent samples ``mean_noise`` falls like ``1/sqrt(b)``.
    """
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    pop_var = x.var(dim=(0, 2, 3), unbiased=False)
    mean_noise, var_noise = [], []
    for b in batch_sizes:
        idx = torch.stack([torch.randperm(n, generator=g)[:b] for _ in range(n_batches)])  # (T, b)
        xb = x[idx]  # (T, b, C, H, W)
        m = xb.mean(dim=(1, 3, 4))  # (T, C)
        v = xb.var(dim=(1, 3, 4), unbiased=False)
        mean_noise.append(float((m.std(dim=0) / pop_var.sqrt()).mean()))
        var_noise.append(float((v.std(dim=0) / pop_var).mean()))
    return np.array(mean_noise), np.array(var_noise)


def _copy_with_bn_momentum(model: StackedCNN, momentum: float | None) -> StackedCNN:
    import copy

    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nnn.BatchNorm2d):
            m.momentum = momentum
    return twin


@one_thread()
@torch.no_grad()
def with_population_stats(model: StackedCNN, x: Tensor) -> StackedCNN:
    """A copy of ``model`` whose Batch Norm running statistics are the exact statistics of ``x``.

    One forward pass in training mode over all of ``x`` (``(n, 1, H, W)``) with
    momentum 1, so each BN layer stores the mean and unbiased variance of its
    input over the whole set, computed with the layers before it also
    normalized by whole-set statistics.  Evaluating the copy removes the
    estimation error of the running averages and keeps everything else.
    """
    twin = _copy_with_bn_momentum(model, 1.0)
    twin.train()
    twin(x.expand(-1, twin.copies, -1, -1))
    return twin.eval()


@one_thread()
@torch.no_grad()
def evaluate_in_batches(model: StackedCNN, x: Tensor, y: Tensor, batch_size: int, seed: int = 0) -> np.ndarray:
    """Test error (%) of every copy with Batch Norm in *training* mode on random test batches.

    The test set is shuffled (``seed``) and cut into batches of ``batch_size``
    (the remainder is dropped); each batch is normalized with its own
    statistics, as during training.  Running statistics are not touched.
    """
    twin = _copy_with_bn_momentum(model, 0.0)
    twin.train()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n = len(y) - len(y) % batch_size
    wrong = torch.zeros(twin.copies)
    for k in range(0, n, batch_size):
        idx = perm[k : k + batch_size]
        logits = twin(x[idx].expand(-1, twin.copies, -1, -1))
        wrong += (logits.argmax(-1) != y[idx, None]).float().sum(0)
    return (100.0 * wrong / n).numpy()
