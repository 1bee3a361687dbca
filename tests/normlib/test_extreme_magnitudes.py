"""Results do not depend on the memory layout or the kernel at extreme magnitudes (issue 16, item 8).

At ``|x| ≈ 1e19`` the sum of squared deviations overflows float32, and from
about 1e20 the variance itself does.  Every path (the C kernels on contiguous
input, the whole-tensor path on channels_last input or with the kernels off)
must give the float64 answer, forward and backward.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as TF

import normlib.functional as NF
from normlib import fused
from normlib.rms import rms_norm

OPS = {  # name: (normlib op, torch op in float64, parameter size)
    "batch_norm": (lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True),
                   lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), 6),
    "instance_norm": (lambda x, w, b: NF.instance_norm(x, weight=w, bias=b),
                      lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), 6),
    "group_norm": (lambda x, w, b: NF.group_norm(x, 3, w, b), lambda x, w, b: TF.group_norm(x, 3, w, b), 6),
    "layer_norm": (lambda x, w, b: NF.layer_norm(x, (8,), w, b), lambda x, w, b: TF.layer_norm(x, (8,), w, b), 8),
    "rms_norm": (lambda x, w, b: rms_norm(x, (8,), w, eps=1e-6) + 0 * b.sum(),
                 lambda x, w, b: TF.rms_norm(x, (8,), w, eps=1e-6) + 0 * b.sum(), 8),
}
LAYOUTS = ["contiguous", "channels_last", "kernels off"]


def _run(op, x, w, b, dy, layout):
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    with fused.disabled() if layout == "kernels off" else contextlib.nullcontext():
        y = op(x, w, b)
        y.backward(dy)
    return y, x.grad, w.grad, b.grad


def _close(got, want, rtol):
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all()
    scale = want.abs().max().clamp_min(1e-300)
    assert ((got - want).abs().max() / scale).item() < rtol


@pytest.mark.parametrize("scale", [1e19, 4e20, 1e25, 1e37], ids=["1e19", "4e20", "1e25", "1e37"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(OPS))
def test_every_layout_gives_the_float64_answer(name, layout, scale):
    ours, theirs, size = OPS[name]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 6, 8, 8, generator=g) - 0.5) * scale
    w, b = torch.rand(size, generator=g) + 0.5, torch.randn(size, generator=g)
    dy = torch.randn(4, 6, 8, 8, generator=g)
    got = _run(ours, x, w, b, dy, layout)
    want = _run(theirs, x.double(), w.double(), b.double(), dy.double(), "contiguous")
    _close(got[0], want[0], 1e-5)  # y
    _close(got[1], want[1], 1e-4)  # dx, of size about 1/|x|
    _close(got[2], want[2], 1e-4)  # dweight
    if name != "rms_norm":
        _close(got[3], want[3], 1e-5)  # dbias
