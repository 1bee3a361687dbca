r"""Gradient descent on a least-squares loss, and why feature scales set its speed.

For a linear model with design matrix :math:`A` (``n`` rows, one column per feature,
plus a column of ones for the bias) and the loss

.. math::  L(\mathbf w) = \frac{1}{2n}\lVert A\mathbf w - \mathbf y\rVert^2,
           \qquad \nabla L = \frac{1}{n}A^\top(A\mathbf w - \mathbf y),
           \qquad H = \nabla^2 L = \frac{1}{n}A^\top A,

the Hessian is exact and constant, so everything about plain gradient descent
``w ← w − η ∇L`` is known in closed form.  In the eigenbasis of :math:`H`
(eigenvalues :math:`\lambda_i`, coordinates :math:`c_i` of :math:`\mathbf w_0 - \mathbf w^*`)

.. math::  L(\mathbf w_t) - L^* = \sum_i \tfrac12 \lambda_i c_i^2 (1-\eta\lambda_i)^{2t},

which converges iff :math:`0 < \eta < 2/\lambda_{\max}`; the best fixed step
:math:`\eta^* = 2/(\lambda_{\max}+\lambda_{\min})` contracts the error by
:math:`(\kappa-1)/(\kappa+1)` per step, with :math:`\kappa = \lambda_{\max}/\lambda_{\min}`.

All functions take and return NumPy float64 arrays.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "age_salary_data",
    "design_matrix",
    "lsq_loss",
    "lsq_grad",
    "lsq_hessian",
    "lsq_solution",
    "gradient_descent",
    "GDRun",
    "max_stable_lr",
    "condition_number",
    "gd_contraction",
    "excess_loss",
    "steps_to_excess",
]


def age_salary_data(n: int = 200, seed: int = 0, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic data with two features of very different scales.

    ``age`` uniform on [0, 65] years and ``salary`` uniform on [0, 10 000] per month;
    the target (say, a monthly spending score) is ``1 + 0.05·age + 0.0003·salary`` plus
    Gaussian noise of standard deviation ``noise``.

    Returns ``X`` of shape ``(n, 2)`` (columns age, salary) and ``y`` of shape ``(n,)``.
    Raises ``ValueError`` for ``n < 3`` or ``noise < 0``.
    """
    if n < 3:
        raise ValueError(f"age_salary_data: need n >= 3 samples, got n={n}")
    if noise < 0:
        raise ValueError(f"age_salary_data: noise must be >= 0, got noise={noise}")
    rng = np.random.default_rng(seed)
    age = rng.uniform(0.0, 65.0, n)
    salary = rng.uniform(0.0, 10_000.0, n)
    y = 1.0 + 0.05 * age + 0.0003 * salary + noise * rng.standard_normal(n)
    return np.stack([age, salary], axis=1), y


def design_matrix(X: np.ndarray, bias: bool = True) -> np.ndarray:
    """``X`` with a trailing column of ones (the bias feature) when ``bias``: shape ``(n, d+1)``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"design_matrix: expected a 2-D X (n, d), got shape {list(X.shape)}")
    return np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X


def _check(A: np.ndarray, y: np.ndarray | None = None, w: np.ndarray | None = None, op: str = "lsq") -> None:
    if A.ndim != 2:
        raise ValueError(f"{op}: expected a 2-D design matrix A (n, p), got shape {list(A.shape)}")
    if y is not None and y.shape != (A.shape[0],):
        raise ValueError(f"{op}: expected y of shape [{A.shape[0]}] for A of shape {list(A.shape)}, got {list(y.shape)}")
    if w is not None and w.shape != (A.shape[1],):
        raise ValueError(f"{op}: expected w of shape [{A.shape[1]}] for A of shape {list(A.shape)}, got {list(w.shape)}")


def lsq_loss(A: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``||A w − y||² / (2n)``."""
    _check(A, y, w, "lsq_loss")
    r = A @ w - y
    return float(r @ r / (2 * A.shape[0]))


def lsq_grad(A: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Aᵀ(A w − y) / n``, shape ``(p,)``."""
    _check(A, y, w, "lsq_grad")
    return A.T @ (A @ w - y) / A.shape[0]


def lsq_hessian(A: np.ndarray) -> np.ndarray:
    """``AᵀA / n``, shape ``(p, p)``: the exact, constant Hessian of :func:`lsq_loss`."""
    _check(A, op="lsq_hessian")
    return A.T @ A / A.shape[0]


def lsq_solution(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimizer ``w*`` (least squares, by SVD), shape ``(p,)``."""
    _check(A, y, op="lsq_solution")
    return np.linalg.lstsq(A, y, rcond=None)[0]


class GDRun(NamedTuple):
    """Result of :func:`gradient_descent`: final weights, the loss before each step and at the end."""

    w: np.ndarray
    losses: np.ndarray  # shape (steps + 1,); inf after divergence
    diverged: bool


def gradient_descent(A: np.ndarray, y: np.ndarray, w0: np.ndarray, lr: float, steps: int,
                     blowup: float = 1e12) -> GDRun:
    """Plain gradient descent ``w ← w − lr·∇L`` for ``steps`` steps on :func:`lsq_loss`.

    Stops early, with the remaining losses set to ``inf`` and ``diverged=True``, once
    the loss exceeds ``blowup`` times the initial loss (no overflow warnings).
    Raises ``ValueError`` for ``lr <= 0`` or ``steps < 0``.
    """
    _check(A, y, w0, "gradient_descent")
    if not lr > 0:
        raise ValueError(f"gradient_descent: lr must be > 0, got lr={lr}")
    if steps < 0:
        raise ValueError(f"gradient_descent: steps must be >= 0, got steps={steps}")
    w = np.array(w0, dtype=np.float64)
    losses = np.full(steps + 1, np.inf)
    losses[0] = lsq_loss(A, y, w)
    limit = blowup * max(losses[0], 1e-300)
    for t in range(steps):
        w = w - lr * lsq_grad(A, y, w)
        loss = lsq_loss(A, y, w)
        if not loss <= limit:
            return GDRun(w, losses, True)
        losses[t + 1] = loss
    return GDRun(w, losses, False)


def _eig(H: np.ndarray, op: str) -> np.ndarray:
    """Eigenvalues (ascending) of a symmetric matrix; raises ValueError naming ``op`` otherwise."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"{op}: expected a square Hessian, got shape {list(H.shape)}")
    if not np.allclose(H, H.T, rtol=1e-10, atol=0):
        raise ValueError(f"{op}: expected a symmetric Hessian")
    return np.linalg.eigvalsh(H)


def max_stable_lr(H: np.ndarray) -> float:
    """``2 / λ_max(H)``: gradient descent on the quadratic converges iff ``lr`` is below it."""
    return float(2.0 / _eig(H, "max_stable_lr")[-1])


def condition_number(H: np.ndarray) -> float:
    """``κ = λ_max / λ_min`` of a symmetric positive-definite ``H``; ``ValueError`` if singular."""
    lam = _eig(H, "condition_number")
    if lam[0] <= 0:
        raise ValueError(f"condition_number: H is not positive definite (smallest eigenvalue {lam[0]:.3g})")
    return float(lam[-1] / lam[0])


def gd_contraction(kappa: float) -> float:
    """``(κ − 1)/(κ + 1)``: per-step error contraction of GD with the best fixed step."""
    if kappa < 1:
        raise ValueError(f"gd_contraction: a condition number is >= 1, got {kappa}")
    return (kappa - 1.0) / (kappa + 1.0)


def excess_loss(H: np.ndarray, e0: np.ndarray, lr: float, t: int | np.ndarray) -> np.ndarray:
    """Closed form of ``L(w_t) − L*`` after ``t`` GD steps from ``w_0 = w* + e0``.

    ``Σ_i ½ λ_i c_i² (1 − lr·λ_i)^{2t}`` with ``c = Qᵀ e0`` in the eigenbasis ``Q`` of ``H``.
    ``t`` may be an integer array; returns an array of its shape.
    Raises ``ValueError`` for a non-square or non-symmetric ``H``, an ``e0`` whose shape is
    not ``(p,)`` for ``H`` of shape ``(p, p)``, or a negative ``t``.
    """
    _eig(H, "excess_loss")
    H = np.asarray(H, dtype=np.float64)
    e0 = np.asarray(e0, dtype=np.float64)
    if e0.shape != (H.shape[0],):
        raise ValueError(f"excess_loss: expected e0 of shape [{H.shape[0]}] for H of shape {list(H.shape)}, "
                         f"got {list(e0.shape)}")
    if np.any(np.asarray(t) < 0):
        raise ValueError("excess_loss: expected step counts t >= 0")
    lam, Q = np.linalg.eigh(H)
    c = Q.T @ e0
    t = np.asarray(t, dtype=np.float64)
    factors = np.abs(1.0 - lr * lam) ** (2.0 * t[..., None])
    return (0.5 * lam * c * c * factors).sum(axis=-1)


def steps_to_excess(H: np.ndarray, e0: np.ndarray, lr: float, target: float, max_steps: int = 10**18) -> int:
    """The fewest GD steps ``t`` with ``excess_loss(H, e0, lr, t) <= target``, from the closed form.

    Every term of the excess loss decays geometrically when ``lr < 2/λ_max``, so the
    excess is non-increasing in ``t`` and a bisection over ``t`` finds the answer without
    running the steps (useful when it is in the billions).
    Raises ``ValueError`` if ``lr >= 2/λ_max`` (no convergence) or ``target <= 0``.
    """
    if target <= 0:
        raise ValueError(f"steps_to_excess: target must be > 0, got {target}")
    if lr >= max_stable_lr(H):
        raise ValueError(f"steps_to_excess: lr={lr:.3g} >= 2/λ_max={max_stable_lr(H):.3g}: gradient descent diverges")
    if excess_loss(H, e0, lr, 0) <= target:
        return 0
    lo, hi = 0, 1
    while excess_loss(H, e0, lr, hi) > target:
        lo, hi = hi, hi * 2
        if hi > max_steps:
            raise ValueError(f"steps_to_excess: more than {max_steps} steps needed")
    while hi - lo > 1:  # invariant: excess(lo) > target >= excess(hi)
        mid = (lo + hi) // 2
        if excess_loss(H, e0, lr, mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
