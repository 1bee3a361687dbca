"""Exact merging of shard statistics, and Batch Norm across two local processes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normlib.distributed import (
    CrossProcessBatchNorm2d,
    Stats,
    make_problem,
    merge,
    merge_all,
    shard_stats,
    spawn_check,
)


def _reference(x, axis=0):
    return x.shape[axis], x.mean(axis=axis), ((x - x.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    offset=st.sampled_from([0.0, 1e3, 1e6]),
    seed=st.integers(0, 10_000),
)
def test_merge_all_equals_statistics_of_concatenation_numpy(sizes, offset, seed):
    rng = np.random.default_rng(seed)
    shards = [rng.normal(offset, 1.0 + k, size=(n, 3)) for k, n in enumerate(sizes)]
    merged = merge_all([shard_stats(s, 0) for s in shards])
    n, mean, m2 = _reference(np.concatenate(shards))
    assert merged.count == n
    np.testing.assert_allclose(merged.mean, mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.m2, m2, rtol=1e-9, atol=1e-9)


def test_merge_unequal_counts_torch_large_offset_float32():
    g = torch.Generator().manual_seed(0)
    a = 1e4 + torch.randn(3, 2, 5, 5, generator=g)
    b = 1e4 + 3 * torch.randn(7, 2, 5, 5, generator=g)
    m = merge(shard_stats(a, (0, 2, 3)), shard_stats(b, (0, 2, 3)))
    full = torch.cat([a, b]).double()
    assert m.count == 250
    torch.testing.assert_close(m.mean.double(), full.mean(dim=(0, 2, 3)), rtol=1e-6, atol=0)
    torch.testing.assert_close(m.var.double(), full.var(dim=(0, 2, 3), unbiased=False), rtol=2e-3, atol=0)
    # the naive E[x²] − E[x]² in float32 is far off on the same data
    naive = (torch.cat([a, b]) ** 2).mean(dim=(0, 2, 3)) - torch.cat([a, b]).mean(dim=(0, 2, 3)) ** 2
    assert (naive.double() - full.var(dim=(0, 2, 3), unbiased=False)).abs().max() > 0.5


def test_merge_with_empty_summary_is_identity_and_order_free():
    x = np.arange(10.0)
    s = shard_stats(x, 0)
    empty = Stats(0, 0.0, 0.0)
    assert merge(empty, s) == s or np.allclose(merge(empty, s), s)
    ab = merge(shard_stats(x[:3], 0), shard_stats(x[3:], 0))
    ba = merge(shard_stats(x[3:], 0), shard_stats(x[:3], 0))
    np.testing.assert_allclose([ab.mean, ab.m2], [ba.mean, ba.m2])
    assert ab.var_unbiased == pytest.approx(np.var(x, ddof=1))


def test_errors():
    with pytest.raises(ValueError, match="merge_all: expected at least one Stats"):
        merge_all([])
    with pytest.raises(ValueError, match="shard_stats: no values to summarize"):
        shard_stats(np.zeros((0, 3)), 0)


def test_layer_without_process_group_is_plain_batch_norm():
    torch.manual_seed(0)
    ours, ref = CrossProcessBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    cum, cum_ref = CrossProcessBatchNorm2d(3, momentum=None), torch.nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        xb = torch.randn(4, 3, 2, 2)
        torch.testing.assert_close(cum(xb), cum_ref(xb))
    torch.testing.assert_close(cum.running_var, cum_ref.running_var)
    with pytest.raises(ValueError, match=r"CrossProcessBatchNorm2d: expected 4D input \(got 3D input"):
        ours(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="CrossProcessBatchNorm2d: expected input with 3 channels"):
        ours(torch.randn(2, 4, 4, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(momentum=None),
        dict(momentum=0.3, affine=False),
        dict(track_running_stats=False),
        dict(track_running_stats=False, momentum=None),
    ],
    ids=["default", "momentum_None", "affine_False", "no_running_stats", "no_running_stats_momentum_None"],
)
def test_fallback_matches_torch_batch_norm_in_train_and_eval(kwargs):
    """Without a process group the layer is torch's BatchNorm2d: outputs, gradients and every buffer."""
    torch.manual_seed(1)
    ours, ref = CrossProcessBatchNorm2d(3, **kwargs), torch.nn.BatchNorm2d(3, **kwargs)
    if ref.affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-1, 1)
    ours.load_state_dict(ref.state_dict())
    for step in range(3):
        x = (3 * torch.randn(4, 3, 2, 2) + step).requires_grad_()
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref)
        dy = torch.randn_like(y)
        torch.testing.assert_close(torch.autograd.grad(y, x, dy)[0], torch.autograd.grad(y_ref, x, dy)[0])
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buf)
    assert (ours.running_mean is None) == (not kwargs.get("track_running_stats", True))
    ours.eval(), ref.eval()
    x = 2 * torch.randn(2, 3, 3, 3) + 1
    torch.testing.assert_close(ours(x), ref(x))  # running statistics, or batch statistics without buffers
    if ref.num_batches_tracked is not None:
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3


def test_fallback_with_tracking_switched_off_after_construction_leaves_buffers_alone():
    """PyTorch's rule: buffers exist but track_running_stats=False → train on batch stats, update nothing;
    eval still uses the (frozen) running statistics because the buffers are there."""
    torch.manual_seed(2)
    ours, ref = CrossProcessBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    ours.load_state_dict(ref.state_dict())
    ours(torch.randn(4, 3, 2, 2) + 5), ref(torch.randn(4, 3, 2, 2) + 5)  # different data: overwritten below
    ours.load_state_dict(ref.state_dict())
    ours.track_running_stats = ref.track_running_stats = False
    x = 2 * torch.randn(4, 3, 2, 2) - 3
    torch.testing.assert_close(ours(x), ref(x))
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buf)
    assert int(ours.num_batches_tracked) == 1
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def test_fallback_eval_with_running_stats_uses_them_not_the_batch():
    ours = CrossProcessBatchNorm2d(2).eval()
    with torch.no_grad():
        ours.running_mean.copy_(torch.tensor([1.0, -2.0]))
        ours.running_var.copy_(torch.tensor([4.0, 9.0]))
    x = torch.randn(3, 2, 2, 2)
    expected = (x - ours.running_mean.view(1, 2, 1, 1)) / (ours.running_var.view(1, 2, 1, 1) + ours.eps).sqrt()
    torch.testing.assert_close(ours(x), expected)
    assert int(ours.num_batches_tracked) == 0


def test_shard_stats_over_any_axes_numpy_and_torch():
    rng = np.random.default_rng(3)
    x = rng.normal(50.0, 2.0, size=(3, 4, 5))
    for axes in [(1,), (0, 2), (-1,), 2, (0, 1, 2)]:
        s = shard_stats(x, axes)
        ax = (axes,) if isinstance(axes, int) else axes
        np.testing.assert_allclose(s.mean, x.mean(axis=ax), rtol=1e-13)
        np.testing.assert_allclose(s.m2, ((x - x.mean(axis=ax, keepdims=True)) ** 2).sum(axis=ax), rtol=1e-11)
        assert s.count == int(np.prod([x.shape[a] for a in ax])) and np.shape(s.mean) == np.shape(x.mean(axis=ax))
        t = shard_stats(torch.from_numpy(x), axes)
        assert isinstance(t.mean, torch.Tensor) and t.count == s.count
        np.testing.assert_allclose(t.m2.numpy(), s.m2, rtol=1e-12)
    with pytest.raises(ValueError, match=r"shard_stats: axes \(3,\) out of range for input of shape \[3, 4, 5\]"):
        shard_stats(x, 3)


@pytest.fixture(scope="module")
def two_process_run():
    return spawn_check((2, 4), steps=2, timeout_s=120)


def test_two_processes_equal_batch_norm_on_concatenated_batch(two_process_run):
    x, dy, w, b = make_problem((2, 4))
    bn = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    for step in range(2):
        xs = x.clone().requires_grad_()
        y = bn(xs)
        y.backward(dy)
        if step == 0:
            y0, dx0, dw0, db0 = y.detach(), xs.grad, bn.weight.grad.clone(), bn.bias.grad.clone()
        bn.zero_grad()
    res = two_process_run
    torch.testing.assert_close(torch.cat([r["y"] for r in res]), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["dx"] for r in res]), dx0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sum(r["dweight"] for r in res), dw0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sum(r["dbias"] for r in res), db0, rtol=1e-10, atol=1e-10)
    for r in res:
        torch.testing.assert_close(r["running_mean"], bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-12, atol=1e-12)


def test_two_processes_communicate_one_collective_each_way(two_process_run):
    C, bytes_per = 3, 8  # float64
    for r in two_process_run:
        assert r["comm"] == [("all_gather", 3 * C * bytes_per), ("all_reduce", 2 * C * bytes_per)] * 2


def _batch_norm_on_the_whole_batch(sizes, dtype, steps=1):
    """torch's BatchNorm2d on the concatenated batch of :func:`make_problem`, in ``dtype``
    (float32 parameters for a half-precision input, as the workers)."""
    x, dy, w, b = (t.to(dtype) for t in make_problem(sizes))
    bn = torch.nn.BatchNorm2d(3, dtype=torch.float32 if dtype == torch.float16 else dtype)
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    for _ in range(steps):
        xs = x.clone().requires_grad_()
        y = bn(xs)
        y.backward(dy)
    return y.detach(), xs.grad, bn


def test_an_empty_shard_contributes_nothing_and_every_process_finishes():
    """Issue 16 item 6: a process with 0 samples took part in no collective (it raised before the
    all_gather) and its peer died; now it sends (0, 0, 0) and the step succeeds on every rank."""
    sizes = (0, 4)
    res = spawn_check(sizes, steps=2, timeout_s=120)
    y, dx, bn = _batch_norm_on_the_whole_batch(sizes, torch.float64, steps=2)
    assert [r["y"].shape[0] for r in res] == list(sizes) and [r["dx"].shape[0] for r in res] == list(sizes)
    torch.testing.assert_close(torch.cat([r["y"] for r in res]), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["dx"] for r in res]), dx, rtol=1e-10, atol=1e-12)
    empty = res[sizes.index(0)]
    assert not empty["dweight"].any() and not empty["dbias"].any()  # no values, no share of dγ, dβ
    for r in res:  # every process, the empty one included, tracks the whole batch's statistics
        torch.testing.assert_close(r["running_mean"], bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-12, atol=1e-12)


def test_half_precision_input_comes_back_in_half_precision():
    """Issue 16 item 6: float16 shards give float16 outputs and gradients (statistics in float32,
    parameters and buffers float32, as torch's mixed precision), matching torch on the whole batch."""
    res = spawn_check((2, 4), steps=1, timeout_s=120, dtype=torch.float16)
    y, dx, bn = _batch_norm_on_the_whole_batch((2, 4), torch.float16)
    assert all(r["y"].dtype == r["dx"].dtype == torch.float16 for r in res)
    assert all(r["running_mean"].dtype == torch.float32 for r in res)
    torch.testing.assert_close(torch.cat([r["y"] for r in res]).float(), y.float(), rtol=0, atol=2e-2)
    torch.testing.assert_close(torch.cat([r["dx"] for r in res]).float(), dx.float(), rtol=0, atol=2e-2)
    torch.testing.assert_close(res[0]["running_mean"], bn.running_mean, rtol=1e-3, atol=1e-3)
    for r in res:  # 4 bytes per number: the statistics travel in float32
        assert r["comm"] == [("all_gather", 3 * 3 * 4), ("all_reduce", 2 * 3 * 4)]


def test_spawn_check_fails_fast_instead_of_hanging():
    with pytest.raises(RuntimeError, match="spawn_check"):
        spawn_check((0, 0), steps=1, timeout_s=60)  # no sample anywhere: every worker raises
