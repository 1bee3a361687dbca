"""``torch.compile(fullgraph=True)`` and ``torch.export`` of a model with normlib layers (issue 16, item 9).

Under ``torch.compile`` the core runs the reference formulas in plain torch
operations, which Dynamo traces into one graph (forward and backward).
"""
from __future__ import annotations

import pytest
import torch

import normlib.nn as nnn


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), nnn.BatchNorm2d(4), torch.nn.ReLU(), nnn.GroupNorm(2, 4),
        nnn.InstanceNorm2d(4, affine=True), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 8),
        nnn.LayerNorm(8), nnn.RMSNorm(8))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_fullgraph_compile_gives_the_eager_outputs_gradients_and_running_statistics(backend):
    torch._dynamo.reset()
    eager, compiled = _model(), _model()
    fn = torch.compile(compiled, fullgraph=True, backend=backend)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(2):
        y_e, y_c = eager(x), fn(x)
        torch.testing.assert_close(y_c, y_e)
        y_e.square().sum().backward()
        y_c.square().sum().backward()
    for (name, p_e), p_c in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(p_c.grad, p_e.grad, msg=name)
    for (name, b_e), b_c in zip(eager.named_buffers(), compiled.buffers()):
        torch.testing.assert_close(b_c, b_e, msg=name)


def test_export_keeps_working_and_matches_eager():
    model = _model().eval()
    x = torch.randn(2, 3, 8, 8)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
