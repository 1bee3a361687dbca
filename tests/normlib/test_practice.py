"""Tests of the practice chapter's helpers: momentum conversion, frozen Batch Norm, no-decay groups.

They live in normlib.hyperparams and normlib.frozen_batch_norm; normlib.practice
re-exports them under the names chapter 07 imports.
"""
import re

import pytest
import torch
from torch import nn

import normlib.nn as nnn
from normlib.practice import (
    FrozenBatchNorm,
    freeze_batch_norm,
    keras_momentum,
    param_groups_without_decay,
    torch_momentum,
)


@pytest.mark.parametrize("m", [0.0, 0.1, 0.5, 0.99, 1.0])
def test_momentum_conversion_round_trip_and_same_update(m):
    assert keras_momentum(torch_momentum(m)) == pytest.approx(m)
    bn = nn.BatchNorm1d(1, momentum=torch_momentum(m))
    x = torch.tensor([[1.0], [3.0]])
    bn(x)
    keras_update = m * 0.0 + (1 - m) * 2.0  # Keras: old weighted by m
    assert bn.running_mean.item() == pytest.approx(keras_update)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.9"])
def test_momentum_conversion_rejects_bad_values(bad):
    """The one momentum check of every module and op, named after the converter."""
    for fn in (torch_momentum, keras_momentum):
        with pytest.raises(ValueError, match=re.escape(f"{fn.__name__}: momentum must be in [0, 1], got momentum={bad!r}")):
            fn(bad)


def test_practice_is_a_re_export_of_the_two_modules():
    import normlib.frozen_batch_norm as fbn
    import normlib.hyperparams as hp
    import normlib.practice as practice

    assert practice.FrozenBatchNorm is fbn.FrozenBatchNorm and practice.freeze_batch_norm is fbn.freeze_batch_norm
    assert practice.torch_momentum is hp.torch_momentum and practice.param_groups_without_decay is hp.param_groups_without_decay


def _trained_bn(cls):
    torch.manual_seed(0)
    bn = cls(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    bn.train()
    for _ in range(3):
        bn(torch.randn(8, 3, 4, 4) * 2 + 1)
    return bn


@pytest.mark.parametrize("cls", [nnn.BatchNorm2d, nn.BatchNorm2d])
def test_frozen_batch_norm_equals_eval_and_ignores_train_mode(cls):
    bn = _trained_bn(cls)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), bn, nn.ReLU())
    x = torch.randn(4, 3, 4, 4)
    bn.eval()
    expected = bn(model[0](x)).relu()
    frozen = freeze_batch_norm(model)
    assert isinstance(frozen[1], FrozenBatchNorm)
    frozen.train()
    before = frozen[1].running_mean.clone()
    out = frozen(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(frozen[1].running_mean, before)
    assert not any(p is frozen[1].weight for p in frozen.parameters())


@pytest.mark.parametrize("make", [
    lambda: nnn.BatchNorm2d(3, bias=False), lambda: nn.BatchNorm2d(3, bias=False),
    lambda: nnn.BatchNorm2d(3, affine=False), lambda: nn.BatchNorm2d(3, affine=False),
], ids=["normlib-bias=False", "torch-bias=False", "normlib-affine=False", "torch-affine=False"])
def test_frozen_batch_norm_from_a_layer_without_bias_or_affine(make):
    """Issue 16 item 7: a missing β is 0, a missing γ is 1 (it raised TypeError for bias=False)."""
    bn = make()
    bn.train()(torch.randn(8, 3, 2, 2) * 2 + 1)
    if bn.weight is not None:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 2)
    frozen = FrozenBatchNorm.from_batch_norm(bn)
    assert torch.equal(frozen.bias, torch.zeros(3))
    assert torch.equal(frozen.weight, torch.ones(3) if bn.weight is None else bn.weight.detach())
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


def test_frozen_batch_norm_keeps_float64():
    """Issue 16 item 7: a float64 layer gives float64 buffers; 1 + 1e-12 survives (float32 rounds it to 1)."""
    bn = nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        bn.running_mean.fill_(1 + 1e-12)
        bn.weight.fill_(1 + 1e-12)
    frozen = FrozenBatchNorm.from_batch_norm(bn)
    assert all(b.dtype == torch.float64 for b in frozen.buffers())
    assert (frozen.running_mean - 1).tolist() == pytest.approx([1e-12] * 3, rel=1e-3)
    assert (frozen.weight - 1).tolist() == pytest.approx([1e-12] * 3, rel=1e-3)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=1e-15, atol=1e-15)


def test_frozen_batch_norm_loads_a_batch_norm_state_dict():
    bn = _trained_bn(nn.BatchNorm2d)
    frozen = FrozenBatchNorm(3)
    frozen.load_state_dict(bn.state_dict(), strict=True)
    torch.testing.assert_close(frozen.running_var, bn.running_var)


def test_frozen_batch_norm_needs_running_statistics():
    with pytest.raises(ValueError, match="no running statistics"):
        FrozenBatchNorm.from_batch_norm(nnn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(ValueError, match="num_features must be a positive integer"):
        FrozenBatchNorm(0)
    with pytest.raises(ValueError, match="FrozenBatchNorm: eps must be a finite number > 0"):
        FrozenBatchNorm(2, eps=0.0)


def test_param_groups_cover_every_parameter_once_and_exempt_norms_and_biases():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nnn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nnn.GroupNorm(2, 8),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
        nn.LayerNorm(4),
    )
    decay, no_decay = param_groups_without_decay(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight), id(model[6].weight)}
    opt = torch.optim.SGD([decay, no_decay], lr=0.1, weight_decay=0.3)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]


def test_rms_norm_gain_is_exempt_from_decay():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nnn.RMSNorm(4), nn.RMSNorm(4))
    decay, no_decay = param_groups_without_decay(model, 1e-2)
    assert [id(p) for p in decay["params"]] == [id(model[0].weight)]
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[2].weight)}


def test_param_groups_reject_negative_decay():
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        param_groups_without_decay(nn.Linear(2, 2), -1.0)
