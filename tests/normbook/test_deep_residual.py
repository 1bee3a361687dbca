"""Tests of normbook.deep_residual: signal growth through depth and the variants' initializations."""
import pytest
import torch

from normbook.deep_residual import VARIANTS, ResidualMLP, depth_sweep, signal_through_depth, train_residual
from normbook.digits_sweep import load_digits_split


@pytest.fixture(scope="module")
def data():
    return load_digits_split(n_train=128)


def test_plain_stream_grows_about_sqrt3_per_block_and_identity_starts_do_not(data):
    x, y = data.x_train.flatten(1).double(), data.y_train
    stds = {v: signal_through_depth(ResidualMLP(16, v).double(), x, y)[0] for v in VARIANTS}
    growth = stds["plain"][-1] / stds["plain"][0]
    assert 3 ** (16 / 2) / 4 < growth < 3 ** (16 / 2) * 4  # branch variance 2v: stream var x3
    for v in ("zero-γ", "SkipInit", "Fixup"):
        torch.testing.assert_close(torch.tensor(stds[v]), torch.full((17,), stds[v][0], dtype=torch.float64), rtol=1e-12, atol=0)
    assert stds["BN"][-1] / stds["BN"][0] < 5


def test_divergence_is_reported_as_100_percent(data):
    model = ResidualMLP(64, "plain").double()
    assert train_residual(model, data, steps=5) == 100.0


def test_sweep_and_bad_arguments(data):
    r = depth_sweep(data, variants=("SkipInit", "NF"), depths=(2,), steps=20)
    assert r.errors.shape == (2, 1, 1) and r.error("NF", 2) < 100
    assert r.deepest_trained("SkipInit", threshold=101) == 2
    with pytest.raises(ValueError, match="unknown variant 'LN'"):
        ResidualMLP(2, "LN")
    with pytest.raises(ValueError, match="depth must be >= 1, got 0"):
        ResidualMLP(0, "plain")
