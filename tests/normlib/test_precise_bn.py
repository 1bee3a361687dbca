"""Tests of normlib.precise_bn: recomputed running statistics, against update_bn and exact pooling."""
import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

import normlib.nn as nnn
from normlib.precise_bn import batch_norm_layers, recompute_bn_statistics


def _net(bn_cls):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), bn_cls(4), nn.ReLU(), nn.Conv2d(4, 3, 1), bn_cls(3))


def _batches(k=6, n=4):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(n, 2, 5, 5, generator=g) * (1 + j) + j for j in range(k)]


@pytest.mark.parametrize("bn_cls", [nn.BatchNorm2d, nnn.BatchNorm2d])
def test_unpooled_equals_torch_update_bn(bn_cls):
    a, b = _net(nn.BatchNorm2d), _net(bn_cls)  # update_bn knows only torch's layers
    b.load_state_dict(a.state_dict())
    data = _batches()
    update_bn([(x,) for x in data], a)
    assert recompute_bn_statistics(b, [(x, None) for x in data], pooled=False) == len(data)
    for ma, mb in zip(batch_norm_layers(a), batch_norm_layers(b)):
        torch.testing.assert_close(mb.running_mean, ma.running_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mb.running_var, ma.running_var, rtol=1e-5, atol=1e-5)
        assert mb.momentum == 0.1 and int(mb.num_batches_tracked) == len(data)


def test_pooled_is_the_exact_variance_of_all_values_and_differs_from_update_bn():
    bn = nn.BatchNorm2d(2)
    data = [x for x in _batches()]
    recompute_bn_statistics(bn, data)
    values = torch.cat(data).transpose(0, 1).reshape(2, -1).double()
    torch.testing.assert_close(bn.running_mean, values.mean(1).float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bn.running_var, values.var(1).float(), rtol=1e-6, atol=1e-6)
    avg = nn.BatchNorm2d(2)
    recompute_bn_statistics(avg, data, pooled=False)
    # the batches' means differ (offset j), so the average of within-batch variances is smaller
    assert torch.all(avg.running_var < 0.9 * bn.running_var)


def test_restores_modes_and_touches_nothing_else():
    net = _net(nnn.BatchNorm2d).eval()
    net[1].momentum = None
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    recompute_bn_statistics(net, _batches(2))
    assert not net.training and not net[1].training and net[1].momentum is None
    for k, v in before.items():
        assert torch.equal(net.state_dict()[k], v)


def test_bad_inputs():
    with pytest.raises(ValueError, match="Sequential has no Batch Norm layer with running statistics"):
        recompute_bn_statistics(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), [torch.randn(2, 2)])
    no_stats = nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(ValueError, match="no Batch Norm layer with running statistics"):
        recompute_bn_statistics(no_stats, [torch.randn(2, 2)])
    net = _net(nn.BatchNorm2d)
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(ValueError, match="batches is empty"):
        recompute_bn_statistics(net, [])
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v)
