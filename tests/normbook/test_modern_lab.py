"""The small models of the modern-architectures chapter: shapes, placements, determinism, the tasks."""
from __future__ import annotations

import math

import pytest
import torch

from normbook import modern_lab as lab
from normlib.dynamic_tanh import DyT
from normlib.nn import LayerNorm
from normlib.rms import RMSNorm


def small(**kw):
    kw.setdefault("layers", 2)
    return lab.build(**kw)


def test_sort_task_sorts_and_is_reproducible():
    x, y = lab.sort_task(4, 8, 16, torch.Generator().manual_seed(3))
    x2, _ = lab.sort_task(4, 8, 16, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and x.shape == (4, 8) and x.max() < 16
    assert torch.equal(y, x.sort(dim=1).values)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_blocks_match_their_equations(placement):
    torch.manual_seed(0)
    blk = lab.Block(16, 2, placement, "layer").double()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    if placement == "post":
        h = blk.norm1(x + blk.attention(x))
        ref = blk.norm2(h + blk.mlp(h))
    else:
        h = x + blk.attention(blk.norm1(x))
        ref = h + blk.mlp(blk.norm2(h))
    torch.testing.assert_close(blk(x), ref)


@pytest.mark.parametrize("norm,cls", [("layer", LayerNorm), ("rms", RMSNorm), ("dyt", DyT)])
def test_every_norm_is_of_the_chosen_normlib_kind(norm, cls):
    m = small(norm=norm, qk_norm=True)
    kinds = {type(mod) for mod in m.modules() if isinstance(mod, (LayerNorm, RMSNorm, DyT))}
    assert kinds == {cls}
    assert sum(isinstance(mod, cls) for mod in m.modules()) == 2 * (2 + 2) + 1  # 2 blocks, 4 each, final


def test_matches_the_same_model_with_torch_norms():
    for ours, theirs in [("layer", "torch-layer"), ("rms", "torch-rms")]:
        a, b = small(norm=ours, qk_norm=True), small(norm=theirs, qk_norm=True)
        b.load_state_dict(a.state_dict())
        x, _ = lab.sort_task(4, lab.LENGTH, lab.VOCAB, torch.Generator().manual_seed(0))
        torch.testing.assert_close(a(x), b(x), rtol=1e-12, atol=1e-12)


def test_post_ln_has_no_final_norm_and_streams_are_returned():
    assert isinstance(small(placement="post").final, torch.nn.Identity)
    assert isinstance(small(placement="pre").final, LayerNorm)
    logits, seen = small()(torch.zeros(2, lab.LENGTH, dtype=torch.long), streams=True)
    assert logits.shape == (2, lab.LENGTH, lab.VOCAB) and len(seen) == 3


def test_qk_norm_bounds_the_logits_by_sqrt_dh():
    m = small(qk_norm=True, d=16, heads=2)
    with torch.no_grad():
        for blk in m.blocks:
            blk.qkv.weight.mul_(1e3)
    m(torch.randint(0, lab.VOCAB, (4, lab.LENGTH)))
    assert all(b.max_logit <= math.sqrt(8) + 1e-9 for b in m.blocks)


def test_train_is_deterministic_and_learns():
    h1 = lab.train(small(), 30, 3e-3)
    h2 = lab.train(small(), 30, 3e-3)
    assert h1.loss == h2.loss and len(h1.max_logit) == len(h1.entropy) == 30
    assert h1.final_loss(5) < h1.loss[0]
    assert 0 < min(h1.entropy) <= math.log(lab.LENGTH) + 1e-9


def test_train_stops_on_a_non_finite_loss_and_pads():
    m = small()
    with torch.no_grad():
        m.head.weight.fill_(float("nan"))
    h = lab.train(m, 5, 1e-3)
    assert len(h.loss) == 5 and all(math.isnan(v) for v in h.loss)


def test_measurements_at_initialization():
    g = lab.block_grad_norms(small(layers=3))
    assert len(g) == 3 and all(v > 0 for v in g)
    s = lab.stream_rms(small(layers=3, final_norm=False))
    assert len(s) == 4 and s[-1] > s[0]
    lab.step_closure(small())()  # one step runs


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="make_norm: kind must be one of"):
        lab.make_norm("batch", 8)
    with pytest.raises(ValueError, match="Block: placement must be 'pre' or 'post', got 'mid'"):
        lab.Block(8, 2, "mid", "layer")
    with pytest.raises(ValueError, match="Block: width d=10 must be divisible by heads=4"):
        lab.Block(10, 4, "pre", "layer")
    with pytest.raises(ValueError, match="train: need steps >= 1 and lr > 0"):
        lab.train(small(), 0, 1e-3)


def test_conditional_task_targets_carry_the_class_statistics():
    x, cond, target, s, t = lab.conditional_task(32, classes=3, channels=4)
    k = cond.argmax(dim=1)
    torch.testing.assert_close(target.mean(dim=(2, 3)), t[k], rtol=0, atol=1e-10)
    torch.testing.assert_close(target.std(dim=(2, 3), unbiased=False), s[k], rtol=1e-4, atol=0)


def test_conditioned_net_beats_the_unconditioned_one():
    x, cond, target, _, _ = lab.conditional_task(32)
    losses = {}
    for flag in (True, False):
        torch.manual_seed(0)
        net = lab.ConditionedNet(8, 4, conditioned=flag).double()
        losses[flag] = lab.train_conditional(net, x, cond, target, steps=60)[-1]
    assert losses[True] < 0.1 * losses[False]
