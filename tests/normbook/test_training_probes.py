"""Probes: activations per layer, deterministic SGD, the loss along the gradient."""
import numpy as np
import pytest
import torch
from torch import nn

from normlib.nn import BatchNorm1d
from normbook.training_probes import loss_along_gradient, record_activations, train_sgd


def _net(bn=False):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), *( [BatchNorm1d(8)] if bn else []), nn.ReLU(), nn.Linear(8, 3))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


def test_record_activations_returns_layer_outputs_and_removes_hooks():
    net, (x, _) = _net(), _data()
    acts = record_activations(net, x, (nn.ReLU, nn.Linear))
    assert list(acts) == ["0", "1", "2"]
    torch.testing.assert_close(acts["1"], torch.relu(net[0](x)))
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="no submodule of type"):
        record_activations(net, x, (nn.Conv2d,))


def test_train_sgd_is_deterministic_and_lowers_the_loss():
    x, y = _data()
    a, b = _net(), _net()
    la = train_sgd(a, nn.functional.cross_entropy, x, y, 0.1, 60, batch_size=8)
    lb = train_sgd(b, nn.functional.cross_entropy, x, y, 0.1, 60, batch_size=8)
    assert la == lb
    assert np.mean(la[-8:]) < np.mean(la[:8])
    with pytest.raises(ValueError, match="batch_size must be in"):
        train_sgd(a, nn.functional.cross_entropy, x, y, 0.1, 1, batch_size=33)


@pytest.mark.parametrize("bn", [False, True])
def test_loss_along_gradient_leaves_the_model_unchanged(bn):
    net, (x, y) = _net(bn), _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe = loss_along_gradient(net, nn.functional.cross_entropy, x, y, [0.0, 0.01, 0.1])
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])
    loss0 = float(nn.functional.cross_entropy(net(x), y).detach())
    assert probe.loss[0] == pytest.approx(loss0, rel=1e-6)
    assert probe.grad_change[0] == pytest.approx(0.0, abs=1e-7)
    assert probe.loss[1] < probe.loss[0]  # a small step along -g lowers the loss
    assert probe.grad_norm > 0


class _Point(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))

    def forward(self, x):
        return self.w


def test_loss_along_gradient_on_a_quadratic_is_exact():
    # L(w) = ||w||^2 / 2: g = w, L(w - eta g) = (1 - eta)^2 L(w), grad change = eta ||w||
    probe = loss_along_gradient(_Point(), lambda out, y: 0.5 * (out ** 2).sum(), None, None, [0.1, 0.5, 2.0])
    np.testing.assert_allclose(probe.loss, (1 - probe.etas) ** 2 * 12.5)
    np.testing.assert_allclose(probe.grad_change, probe.etas * 5.0)
    assert probe.grad_norm == pytest.approx(5.0)
    with pytest.raises(ValueError, match="etas must not be empty"):
        loss_along_gradient(_Point(), lambda out, y: out.sum(), None, None, [])
