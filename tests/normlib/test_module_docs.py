"""Every public normlib module is documented like torch's (formula, Args, Shape, an example that
runs), refuses ``torch.jit.script`` with the reason, and the API page says so.

The examples run here as doctests, class by class, so ``pytest tests`` proves them;
``tests/normlib/test_sets.py::test_doctests`` runs every docstring of every module.
"""
from __future__ import annotations

import doctest
import inspect
import pathlib
import sys

import pytest
import torch

import normlib.nn as nnn
from normlib.cosine_norm import CosineConv2d, CosineLinear
from normlib.distributed import CrossProcessBatchNorm2d
from normlib.frozen_batch_norm import FrozenBatchNorm
from normlib.weight_norm import WeightNorm, weight_norm
from normlib.weight_standardization import WSConv2d

ROOT = pathlib.Path(__file__).resolve().parents[2]

PUBLIC_MODULES = [getattr(nnn, name) for name in nnn.__all__] + [
    FrozenBatchNorm, CrossProcessBatchNorm2d, CosineLinear, CosineConv2d, WSConv2d, WeightNorm,
]
WITH_RUNNING_STATS = [c for c in PUBLIC_MODULES if "BatchNorm" in c.__name__ and c is not FrozenBatchNorm
                      or c.__name__.startswith("InstanceNorm")]
ids = [c.__name__ for c in PUBLIC_MODULES]


@pytest.mark.parametrize("cls", PUBLIC_MODULES, ids=ids)
def test_docstring_has_formula_args_shape_and_example(cls):
    doc = inspect.getdoc(cls) or ""
    for part in (".. math::", "Args:", "Shape:", "Examples::", ">>> "):
        assert part in doc, f"{cls.__name__}'s docstring lacks {part!r}"
    assert "momentum" in doc  # what the running estimates do, or that there are none


@pytest.mark.parametrize("cls", WITH_RUNNING_STATS, ids=[c.__name__ for c in WITH_RUNNING_STATS])
def test_docstring_of_a_layer_with_running_statistics_states_estimator_and_momentum_rule(cls):
    doc = inspect.getdoc(cls)
    assert "*biased*" in doc and "*unbiased*" in doc and r"\leftarrow (1 - m)" in doc


@pytest.mark.parametrize("cls", PUBLIC_MODULES, ids=ids)
def test_docstring_example_runs(cls):
    module = sys.modules[cls.__module__]
    tests = doctest.DocTestFinder(recurse=False).find(cls, cls.__name__, module=module, globs=vars(module))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    torch.manual_seed(0)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 2 and result.failed == 0, f"{cls.__name__}: {result}"


def _instance(cls):
    args = {nnn.GroupNorm: (1, 2), CosineLinear: (2, 2), CosineConv2d: (2, 2, 1), WSConv2d: (2, 2, 1),
            WeightNorm: ()}.get(cls, (2,))
    return cls(*args)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("cls", PUBLIC_MODULES, ids=ids)
def test_torch_jit_script_is_refused_with_the_reason(cls):
    """Issue 16 item 9: it failed deep inside an input check ('check_array' is being compiled ...)."""
    model = torch.nn.Sequential(torch.nn.Identity(), _instance(cls))
    with pytest.raises(NotImplementedError, match=rf"{cls.__name__}: torch.jit.script is not supported: .*"
                                                  r"TorchScript is in maintenance mode; use torch.export"):
        torch.jit.script(model)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_weight_normalized_layer_refuses_torch_jit_script_too():
    with pytest.raises(NotImplementedError, match="WeightNorm: torch.jit.script is not supported"):
        torch.jit.script(weight_norm(torch.nn.Linear(3, 2)))


def test_the_api_page_states_that_torchscript_is_not_supported_and_why():
    text = (ROOT / "api.md").read_text()
    assert "torch.jit.script" in text and "maintenance mode" in text
