"""Tests of normlib.ghost_batch_norm against Batch Norm applied chunk by chunk."""
import pytest
import torch
import torch.nn.functional as TF

from normlib.ghost_batch_norm import GhostBatchNorm2d


def _reference(x, rm, rv, w, b, g, momentum, eps):
    """Hoffer et al.'s implementation in plain torch: F.batch_norm on each chunk of g images."""
    return torch.cat([TF.batch_norm(c, rm, rv, w, b, True, momentum, eps) for c in x.split(g)])


@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_matches_torch_batch_norm_per_chunk(g):
    torch.manual_seed(0)
    m = GhostBatchNorm2d(3, ghost_batch_size=g).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 2)
        m.bias.uniform_(-1, 1)
    x = (torch.randn(8, 3, 2, 2, dtype=torch.float64) * 2 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    w = m.weight.detach().clone().requires_grad_()
    b = m.bias.detach().clone().requires_grad_()
    rm, rv = m.running_mean.clone(), m.running_var.clone()
    if g == 1:  # one image of 2x2: 4 values per channel, still more than one
        pass
    y_ref = _reference(x_ref, rm, rv, w, b, g, m.momentum, m.eps)
    y = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m.running_mean, rm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.running_var, rv, rtol=1e-12, atol=1e-12)
    assert int(m.num_batches_tracked) == 8 // g
    gy = torch.randn_like(y)
    (y * gy).sum().backward()
    (y_ref * gy).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(m.weight.grad, w.grad, rtol=1e-9, atol=1e-10)


def test_whole_batch_ghost_is_batch_norm_and_eval_uses_running_stats():
    torch.manual_seed(1)
    m = GhostBatchNorm2d(2, ghost_batch_size=6)
    bn = torch.nn.BatchNorm2d(2)
    x = torch.randn(6, 2, 3, 3)
    torch.testing.assert_close(m(x), bn(x), rtol=1e-5, atol=1e-5)
    m.eval(), bn.eval()
    torch.testing.assert_close(m(x), bn(x), rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip():
    m = GhostBatchNorm2d(3, ghost_batch_size=2)
    m(torch.randn(4, 3, 2, 2))
    bn = torch.nn.BatchNorm2d(3)
    bn.load_state_dict(m.state_dict(), strict=True)
    again = GhostBatchNorm2d(3, ghost_batch_size=4)
    again.load_state_dict(bn.state_dict(), strict=True)
    for k, v in m.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_bad_inputs():
    with pytest.raises(ValueError, match="ghost_batch_size must be a positive integer, got 0"):
        GhostBatchNorm2d(3, ghost_batch_size=0)
    m = GhostBatchNorm2d(3, ghost_batch_size=4)
    with pytest.raises(ValueError, match=r"batch of input of shape \[6, 3, 2, 2\] is not a multiple of ghost_batch_size=4"):
        m(torch.randn(6, 3, 2, 2))
    with pytest.raises(ValueError, match=r"expected 4D input"):
        m(torch.randn(4, 3, 2))
    m.eval()
    assert m(torch.randn(6, 3, 2, 2)).shape == (6, 3, 2, 2)  # eval: any batch
