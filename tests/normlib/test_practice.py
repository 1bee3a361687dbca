"""Tests of normlib.practice: momentum conversion, frozen Batch Norm, no-decay groups."""
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
    with pytest.raises(ValueError, match="momentum must be a number in"):
        torch_momentum(bad)


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


def test_param_groups_reject_negative_decay():
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        param_groups_without_decay(nn.Linear(2, 2), -1.0)
