"""Tests of normbook.timing: the reference implementation, the pass counter and the timing harness."""
from __future__ import annotations

import contextlib

import torch

from normlib import fused

from normbook.timing import (CASES, count_passes, count_reductions, elementwise_norm, inputs, interleaved,
                             one_thread, time_case)
from normbook.timing import Case
import normlib.functional as NF


def test_elementwise_reference_matches_torch_layer_and_group_norm():
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    w, b = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(elementwise_norm(x, (-1,), 1e-5, w, b), torch.nn.functional.layer_norm(x, (5,), w, b))
    torch.testing.assert_close(elementwise_norm(x, (2,), 1e-5, groups=3), torch.nn.functional.group_norm(x, 3))


def test_every_case_has_the_three_implementations_agreeing_on_small_inputs():
    for case in CASES:
        small = Case(case.name, tuple(max(2, s // 16) for s in case.shape), case.param_shape, case.impls, case.has_bias)
        if case.name in ("LayerNorm", "RMSNorm"):
            small = Case(case.name, (2, 3, case.shape[-1]), case.param_shape, case.impls, case.has_bias)
        if case.name.startswith("GroupNorm"):
            small = Case(case.name, (2, 64, 3, 3), case.param_shape, case.impls, case.has_bias)
        if case.name.startswith("BatchNorm"):
            small = Case(case.name, (4, 64, 3, 3), case.param_shape, case.impls, case.has_bias)
        x, w, b, _ = inputs(small)
        outs = {k: f(x, w, b).detach() for k, f in case.impls.items()}
        assert set(outs) == {"native", "normlib", "unfused", "autograd"}, case.name
        for k, y in outs.items():
            torch.testing.assert_close(y, outs["native"], rtol=1e-4, atol=1e-4, msg=f"{case.name}: {k}")


def test_count_passes_sees_one_kernel_for_native_and_fused_and_six_whole_tensor_operations():
    x = torch.randn(64, 32, requires_grad=True)
    w = torch.ones(32, requires_grad=True)
    b = torch.zeros(32, requires_grad=True)
    native = count_passes(lambda: torch.nn.functional.layer_norm(x, (32,), w, b), x.numel())
    fused_log: list = []
    ours = count_passes(lambda: NF.layer_norm(x, (32,), w, b), x.numel(), fused_log)
    with fused.disabled():
        whole = count_passes(lambda: NF.layer_norm(x, (32,), w, b), x.numel())
    assert native == {"ops": 1, "reads": 1, "writes": 1}
    assert ours == {"ops": 1, "reads": 1, "writes": 1}
    assert fused_log == [("normlib.fused_norm_forward.default", 1, 1)]
    # mean, x − μ, Σ(x − μ)², ·r, ·γ, +β
    assert whole == {"ops": 6, "reads": 6, "writes": 4}
    for ctx in (contextlib.nullcontext(), fused.disabled()):
        with ctx:
            y = NF.layer_norm(x, (32,), w, b)
            log: list = []
            back = count_passes(lambda: y.backward(torch.ones_like(y)), x.numel(), log)
        assert back["ops"] == len(log) and back["writes"] >= 1
        assert all(isinstance(name, str) for name, _, _ in log)
    assert log[0] != ("normlib.fused_norm_backward.default", 2, 1)  # the last loop ran the whole-tensor path


def test_count_passes_ignores_views_and_counts_out_arguments_as_writes():
    x = torch.randn(8, 8)
    buf = torch.empty(8, 8)
    c = count_passes(lambda: (x.reshape(64), x.t(), torch.mul(x, 2.0, out=buf)), x.numel())
    assert c == {"ops": 1, "reads": 1, "writes": 1}


def test_interleaved_runs_every_callable_the_requested_number_of_times():
    calls = {"a": 0, "b": 0}

    def make(k):
        def f():
            calls[k] += 1
        return f

    times = interleaved({"a": make("a"), "b": make("b")}, repeats=4, warmup=2)
    assert calls == {"a": 6, "b": 6}
    assert all(len(v) == 4 and min(v) >= 0 for v in times.values())


def test_time_case_reports_each_pass_and_one_thread_restores_the_thread_count():
    case = next(c for c in CASES if c.name == "LayerNorm")
    small = Case(case.name, (2, 4, 768), case.param_shape, case.impls)
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
        res = time_case(small, repeats=2, clock="cpu")
    assert torch.get_num_threads() == before
    assert set(res) == {"native", "normlib", "unfused", "autograd"}
    for v in res.values():
        assert set(v) == {"fwd", "bwd", "fwd+bwd"} and all(t > 0 for t in v.values())


def test_rms_norm_needs_one_reduction_where_layer_norm_needs_two():
    from normlib.rms import rms_norm

    x = torch.randn(4, 32)
    y, n_rms = count_reductions(rms_norm, x, [32])
    _, n_ln = count_reductions(NF.layer_norm, x, [32])
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x, [32]))
    assert sum(n_rms.values()) == 1 and sum(n_ln.values()) == 2
    assert n_ln == {"mean": 1, "linalg_vector_norm": 1}
