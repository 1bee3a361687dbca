"""Tests of normbook.small_batch: the digits stack with the small-batch normalizers."""
import numpy as np
import pytest
import torch

from normbook.digits_sweep import StackedCNN, load_digits_split
from normbook.small_batch import METHODS, SmallBatchCNN, format_table, make_norm_act, run_small_batch_sweep


def test_a_copy_in_the_stack_computes_what_it_computes_alone():
    torch.manual_seed(0)
    stack = SmallBatchCNN(list(METHODS), seeds=[0, 1])
    x = torch.randn(4, 1, 8, 8)
    out = stack(x.expand(-1, stack.copies, -1, -1))
    for m_idx, method in enumerate(METHODS):
        alone = SmallBatchCNN([method], seeds=[1])
        torch.testing.assert_close(out[:, m_idx * 2 + 1], alone(x)[:, 0], rtol=1e-5, atol=1e-5)


def test_batch_norm_copy_equals_the_batch_size_chapters_stack():
    ours, theirs = SmallBatchCNN(["BN"], seeds=[3]), StackedCNN(["BN"], seeds=[3])
    x = torch.randn(6, 1, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_bad_methods_and_inputs():
    with pytest.raises(ValueError, match="unknown method 'LN'"):
        SmallBatchCNN(["BN", "LN"], seeds=[0])
    with pytest.raises(ValueError, match="unknown method 'XN'"):
        make_norm_act("XN", 1, 4)
    with pytest.raises(ValueError, match=r"expected input of shape \[B, 2, H, W\], got \[3, 1, 8, 8\]"):
        SmallBatchCNN(["BN", "GN"], seeds=[0])(torch.randn(3, 1, 8, 8))


def test_sweep_shapes_and_table():
    data = load_digits_split(n_train=64)
    r = run_small_batch_sweep(data, methods=("BN", "FRN"), batch_sizes=(32, 4), seeds=(0, 1), epochs=1)
    assert r.methods == ["BN", "FRN", "BN+pop"] and r.errors.shape == (2, 3, 2)
    assert np.all((r.errors >= 0) & (r.errors <= 100))
    lines = format_table(r).splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["method", "batch"]
    assert r.max_spread() >= r.spread("BN", 4)


def test_sweep_in_worker_processes_gives_bitwise_the_same_errors():
    data = load_digits_split(n_train=64)
    kw = dict(methods=("BN", "GN"), batch_sizes=(32, 4, 2), seeds=(0,), epochs=1, dtype=torch.float32)
    here = run_small_batch_sweep(data, **kw)
    forked = run_small_batch_sweep(data, processes=2, **kw)
    np.testing.assert_array_equal(here.errors, forked.errors)
    assert here.methods == forked.methods == ["BN", "GN", "BN+pop"]
