"""Property tests (hypothesis): the equivalences between the normalizers, and S itself.

* Group Norm with one group is Layer Norm over (C, *spatial);
* Group Norm with C groups is Instance Norm;
* Batch Norm (training) of a batch of one is Instance Norm;
* every op's output has mean 0 and variance sigma^2/(sigma^2 + eps) ~ 1 on
  every set S, where the sets are read from :meth:`StatSet.labels`: the
  picture's description of S and the arithmetic agree.

The hypothesis profile (tests/conftest.py) is derandomized and bounded, so the
examples are the same on every run.
"""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import normlib.functional as nf
from normlib.core import normalize
from normlib.sets import StatSet, batch_set, group_set, instance_set, layer_set

EPS = 1e-5
TOL = 1e-10


# --------------------------------------------------------------------------- strategies
@st.composite
def shapes(draw, min_ndim: int = 2, max_ndim: int = 5, min_spatial: int = 1, max_dim: int = 4):
    """(N, C, *spatial) with a product of spatial sizes of at least ``min_spatial``."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    n = draw(st.integers(1, max_dim))
    c = draw(st.integers(1, max_dim + 1))
    spatial = draw(st.lists(st.integers(1, max_dim), min_size=ndim - 2, max_size=ndim - 2))
    if ndim > 2 and int(np.prod(spatial)) < min_spatial:
        spatial[0] = min_spatial
    return (n, c, *spatial)


@st.composite
def arrays(draw, shape_strategy=None, dtype=np.float64):
    """A NumPy array from a seeded normal, with a random scale and offset (no float rounding games)."""
    shape = draw(shape_strategy if shape_strategy is not None else shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.floats(0.1, 50.0))
    offset = draw(st.floats(-100.0, 100.0))
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def assert_close(a, b, tol=TOL, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=what)


# --------------------------------------------------------------------------- equivalences
@given(arrays())
def test_group_norm_one_group_is_layer_norm_over_channels_and_positions(x):
    C = x.shape[1]
    ln = nf.layer_norm(x, x.shape[1:], eps=EPS)
    assert_close(nf.group_norm(x, 1, eps=EPS), ln, what="GN(G=1) vs LN(C, *spatial)")
    # with unit affine parameters: per-channel ones/zeros vs elementwise ones/zeros
    gn = nf.group_norm(x, 1, np.ones(C), np.zeros(C), eps=EPS)
    ln = nf.layer_norm(x, x.shape[1:], np.ones(x.shape[1:]), np.zeros(x.shape[1:]), eps=EPS)
    assert_close(gn, ln, what="with unit affine")


@given(arrays(shapes(min_ndim=3, min_spatial=2)))
def test_group_norm_with_C_groups_is_instance_norm(x):
    C = x.shape[1]
    assert_close(nf.group_norm(x, C, eps=EPS), nf.instance_norm(x, eps=EPS))
    w, b = np.linspace(0.5, 2.0, C), np.linspace(-1.0, 1.0, C)
    assert_close(nf.group_norm(x, C, w, b, eps=EPS), nf.instance_norm(x, weight=w, bias=b, eps=EPS))


@given(arrays(shapes(min_ndim=3, min_spatial=2)))
def test_batch_norm_of_a_batch_of_one_is_instance_norm(x):
    x1 = x[:1]
    assert_close(nf.batch_norm(x1, None, None, training=True, eps=EPS), nf.instance_norm(x1, eps=EPS))


@given(arrays(shapes(min_ndim=3, min_spatial=2)))
def test_instance_norm_is_batch_norm_of_each_sample(x):
    per_sample = np.concatenate([nf.batch_norm(x[i : i + 1], None, None, training=True, eps=EPS)
                                 for i in range(x.shape[0])])
    assert_close(nf.instance_norm(x, eps=EPS), per_sample)


@given(arrays())
def test_batch_norm_eval_with_the_batch_statistics_equals_training(x):
    """Eval with running stats set to the batch's biased moments reproduces the training output."""
    axes = tuple(i for i in range(x.ndim) if i != 1)
    if x.shape[0] * int(np.prod(x.shape[2:])) < 2:
        return  # one value per channel: training is undefined (tested in test_errors)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    assert_close(nf.batch_norm(x, mean, var, training=False, eps=EPS),
                 nf.batch_norm(x, None, None, training=True, eps=EPS))


@given(arrays(), st.floats(-1e3, 1e3))
def test_output_is_invariant_to_a_shift_of_the_input(x, shift):
    for out in (lambda a: nf.group_norm(a, 1, eps=EPS), lambda a: nf.layer_norm(a, a.shape[-1:], eps=EPS)):
        assert_close(out(x + shift), out(x), tol=1e-8)


@given(arrays(shapes(min_ndim=3, min_spatial=2)))
def test_numpy_and_torch_give_the_same_numbers(x):
    C = x.shape[1]
    for f in (
        lambda a: nf.instance_norm(a, eps=EPS),
        lambda a: nf.group_norm(a, 1, eps=EPS),
        lambda a: nf.layer_norm(a, a.shape[-2:], eps=EPS),
    ):
        assert_close(f(x), f(torch.from_numpy(x)).numpy())
    rm, rv = np.zeros(C), np.ones(C)
    rmt, rvt = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    if x.shape[0] * int(np.prod(x.shape[2:])) > 1:
        assert_close(nf.batch_norm(x, rm, rv, training=True), nf.batch_norm(torch.from_numpy(x), rmt, rvt, training=True).numpy())
        assert_close(rm, rmt.numpy())
        assert_close(rv, rvt.numpy())


# --------------------------------------------------------------------------- S from the labels
def _grouped_moments(x: np.ndarray, labels: np.ndarray):
    """Mean, biased variance and size of each label's group, by bincount (no reshaping, no axes)."""
    lab = labels.ravel()
    n = np.bincount(lab)
    mean = np.bincount(lab, weights=x.ravel()) / n
    dev = x.ravel() - mean[lab]
    var = np.bincount(lab, weights=dev * dev) / n
    return mean, var, n


def _ops_and_sets(x: np.ndarray):
    """Each functional op (no affine) with the StatSet that should describe its S."""
    ndim, C = x.ndim, x.shape[1]
    out = []
    if x.shape[0] * int(np.prod(x.shape[2:])) > 1:
        out.append(("batch_norm", lambda a: nf.batch_norm(a, None, None, training=True, eps=EPS), batch_set()))
    if ndim >= 3 and int(np.prod(x.shape[2:])) > 1:
        out.append(("instance_norm", lambda a: nf.instance_norm(a, eps=EPS), instance_set()))
    for k in range(1, ndim + 1):
        out.append((f"layer_norm(last {k})", lambda a, k=k: nf.layer_norm(a, a.shape[-k:], eps=EPS), layer_set(k)))
    for g in range(1, C + 1):
        if C % g == 0:
            out.append((f"group_norm(G={g})", lambda a, g=g: nf.group_norm(a, g, eps=EPS), group_set(g)))
    return out


@given(arrays())
def test_every_op_standardizes_every_set_read_from_the_labels(x):
    """Per label group: output mean 0, variance var/(var + eps); and the output IS (x - mean)/sqrt(var+eps)."""
    for name, op, S in _ops_and_sets(x):
        y = op(x)
        labels = S.labels(x.shape)
        assert labels.shape == x.shape
        mean, var, n = _grouped_moments(x, labels)
        assert len(n) == int(np.prod(S.stat_shape(x.shape))), f"{name}: number of sets"
        assert (n == S.set_size(x.shape)).all(), f"{name}: every set has |S| entries"
        lab = labels.ravel()
        expected = (x.ravel() - mean[lab]) / np.sqrt(var[lab] + EPS)
        assert_close(y.ravel(), expected, tol=1e-9, what=f"{name}: output vs label-grouped formula")
        y_mean, y_var, _ = _grouped_moments(y, labels)
        assert_close(y_mean, 0.0, tol=1e-9, what=f"{name}: mean over each S")
        assert_close(y_var, var / (var + EPS), tol=1e-9, what=f"{name}: variance over each S")
        big = var > 1e-2  # where eps is negligible the variance is 1 to within eps/var
        assert np.all(np.abs(y_var[big] - 1.0) <= EPS / var[big] + 1e-9), name


@given(arrays(dtype=np.float32))
def test_float32_output_has_unit_variance_over_each_set(x):
    """Same in float32 (NumPy in, NumPy out), within float32 rounding."""
    for name, op, S in _ops_and_sets(x):
        y = op(x)
        assert y.dtype == np.float32, name
        labels = S.labels(x.shape)
        y_mean, y_var, n = _grouped_moments(y.astype(np.float64), labels)
        _, var, _ = _grouped_moments(x.astype(np.float64), labels)
        assert_close(y_mean, 0.0, tol=1e-4, what=f"{name}: mean")
        assert_close(y_var, var / (var + EPS), tol=1e-4, what=f"{name}: variance")


@given(hnp.arrays(np.float64, shapes(min_ndim=3, min_spatial=2),
                  elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)))
def test_labels_agree_with_arithmetic_on_adversarial_values(x):
    """Hypothesis' own arrays (repeated values, constant sets, mixed magnitudes): the core over S
    equals the formula over the label groups, including sets of variance 0."""
    for S in (batch_set(), instance_set(), layer_set(2), group_set(1)):
        y, m = normalize(x, S, EPS)
        lab = S.labels(x.shape).ravel()
        mean, var, n = _grouped_moments(x, S.labels(x.shape))
        assert m.count == n[0]
        assert_close(np.asarray(m.mean).ravel(), mean, tol=1e-9, what=f"{S.name}: mean")
        assert_close(np.asarray(m.var).ravel(), var, tol=1e-6, what=f"{S.name}: var")
        expected = (x.ravel() - mean[lab]) / np.sqrt(var[lab] + EPS)
        np.testing.assert_allclose(y.ravel(), expected, rtol=1e-6, atol=1e-6 * (1 + np.abs(expected).max()))


@given(shapes(), st.data())
def test_mask_of_an_entry_is_its_set(shape, data):
    """mask(shape, i) marks exactly the entries with i's label, and contains |S| entries."""
    S = data.draw(st.sampled_from([batch_set(), instance_set(), layer_set(1), group_set(1)]))
    if S is not None and S.name == "InstanceNorm" and len(shape) < 3:
        return
    idx = tuple(data.draw(st.integers(0, s - 1)) for s in shape)
    m = S.mask(shape, idx)
    assert m.dtype == bool and m.shape == shape and m[idx]
    assert int(m.sum()) == S.set_size(shape)


def test_a_wrong_description_of_S_is_caught():
    """The label check can fail: a set finer than the op's S is not standardized by it."""
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 3 + 1
    y = nf.batch_norm(x, None, None, training=True, eps=EPS)
    wrong = StatSet("wrong", over_batch=False)  # per (sample, channel): Instance Norm's set
    y_mean, y_var, _ = _grouped_moments(y, wrong.labels(x.shape))
    assert np.abs(y_mean).max() > 0.1 and np.abs(y_var - 1).max() > 0.1
    mean, var, _ = _grouped_moments(x, wrong.labels(x.shape))
    lab = wrong.labels(x.shape).ravel()
    assert not np.allclose(y.ravel(), (x.ravel() - mean[lab]) / np.sqrt(var[lab] + EPS), atol=1e-3)
