"""Gradient descent on least squares: the closed form, the stability limit, the condition number."""
import numpy as np
import pytest

from normbook.least_squares import (
    age_salary_data, condition_number, design_matrix, excess_loss, gd_contraction, gradient_descent,
    lsq_grad, lsq_hessian, lsq_loss, lsq_solution, max_stable_lr, steps_to_excess,
)


@pytest.fixture
def problem():
    X, y = age_salary_data(n=100, seed=1)
    A = design_matrix((X - X.mean(0)) / X.std(0))
    return A, y


def test_data_ranges_and_determinism():
    X, y = age_salary_data(n=500, seed=3)
    assert X.shape == (500, 2) and y.shape == (500,)
    assert 0 <= X[:, 0].min() and X[:, 0].max() <= 65 and X[:, 1].max() <= 10_000 and X[:, 1].max() > 9_000
    np.testing.assert_array_equal(age_salary_data(n=500, seed=3)[1], y)


def test_gradient_matches_finite_differences(problem):
    A, y = problem
    w = np.array([0.3, -0.2, 1.0])
    eps = 1e-6
    fd = [(lsq_loss(A, y, w + eps * e) - lsq_loss(A, y, w - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(lsq_grad(A, y, w), fd, rtol=1e-6)


def test_hessian_is_exact(problem):
    A, y = problem
    w, d = np.array([0.1, 0.2, 0.3]), np.array([1.0, -2.0, 0.5])
    H = lsq_hessian(A)
    np.testing.assert_allclose(lsq_grad(A, y, w + d) - lsq_grad(A, y, w), H @ d, rtol=1e-10)


def test_closed_form_matches_running_gradient_descent(problem):
    A, y = problem
    H, ws = lsq_hessian(A), lsq_solution(A, y)
    w0 = np.zeros(3)
    lr = 0.7 * max_stable_lr(H)
    run = gradient_descent(A, y, w0, lr, 30)
    np.testing.assert_allclose(run.losses - lsq_loss(A, y, ws), excess_loss(H, w0 - ws, lr, np.arange(31)),
                               rtol=1e-6, atol=1e-13)


def test_stability_limit_is_two_over_lambda_max(problem):
    A, y = problem
    H = lsq_hessian(A)
    lr = max_stable_lr(H)
    np.testing.assert_allclose(lr, 2 / np.linalg.eigvalsh(H).max())
    assert not gradient_descent(A, y, np.zeros(3), 0.99 * lr, 2000).diverged
    assert gradient_descent(A, y, np.zeros(3), 1.01 * lr, 2000).diverged


def test_steps_to_excess_is_the_first_crossing(problem):
    A, y = problem
    H, ws = lsq_hessian(A), lsq_solution(A, y)
    e0, lr = -ws, 0.5 * max_stable_lr(H)
    target = 1e-8 * excess_loss(H, e0, lr, 0)
    t = steps_to_excess(H, e0, lr, target)
    assert excess_loss(H, e0, lr, t) <= target < excess_loss(H, e0, lr, t - 1)
    with pytest.raises(ValueError, match="diverges"):
        steps_to_excess(H, e0, 1.01 * max_stable_lr(H), target)


def test_condition_number_and_contraction():
    H = np.diag([1.0, 4.0, 9.0])
    assert condition_number(H) == pytest.approx(9.0)
    assert gd_contraction(9.0) == pytest.approx(0.8)
    lr = 2 / (9 + 1)
    assert max(abs(1 - lr * lam) for lam in (1, 4, 9)) == pytest.approx(gd_contraction(9.0))
    with pytest.raises(ValueError, match="not positive definite"):
        condition_number(np.diag([1.0, 0.0]))
    with pytest.raises(ValueError, match=">= 1"):
        gd_contraction(0.5)


def test_input_checks():
    A = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"expected y of shape \[4\]"):
        lsq_loss(A, np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="lr must be > 0"):
        gradient_descent(A, np.ones(4), np.ones(2), 0.0, 3)
    with pytest.raises(ValueError, match="n >= 3"):
        age_salary_data(n=2)
    with pytest.raises(ValueError, match="max_stable_lr: expected a square Hessian"):
        max_stable_lr(np.ones((2, 3)))


def test_excess_loss_input_checks(problem):
    A, y = problem
    H = lsq_hessian(A)
    with pytest.raises(ValueError, match="e0 of shape"):
        excess_loss(H, np.zeros(H.shape[0] + 1), 0.1, 3)
    with pytest.raises(ValueError, match="square"):
        excess_loss(H[:, :2], np.zeros(H.shape[0]), 0.1, 3)
    with pytest.raises(ValueError, match="t >= 0"):
        excess_loss(H, np.zeros(H.shape[0]), 0.1, np.array([0, -1]))
