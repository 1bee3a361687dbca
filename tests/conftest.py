"""Shared test configuration for normlib's unit suite.

* A deterministic hypothesis profile (``derandomize=True``, bounded examples,
  no deadline) is loaded by default, so CI runs the same examples every time.
  Set ``HYPOTHESIS_PROFILE=dev`` for a randomized, longer search locally.
* torch runs on one thread: results do not depend on the machine's core count,
  and the unit tests' tensors are tiny, where a thread pool only costs time
  (with two threads on a busy 2-core machine one native batch_norm call on a
  4x3x2x2 tensor took ~35 ms, waiting at OpenMP barriers).
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)

#: Conformance tolerances of the issue: 1e-5 in float32, 1e-10 in float64.
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(autouse=True)
def _torch_defaults():
    """Each test starts from float32 defaults and grad mode on, whatever the previous test did."""
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    yield
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
