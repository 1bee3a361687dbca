"""normlib's public names and signatures mirror torch's, so a reader can compare line by line."""
import inspect

import pytest
import torch

import normlib.functional as F
import normlib.nn as nnn

FUNCTIONAL = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm"]
MODULES = [
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "LayerNorm", "GroupNorm", "RMSNorm",
]


def _params(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_signature_matches_torch(name):
    ours, theirs = _params(getattr(F, name)), _params(getattr(torch.nn.functional, name))
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    assert [d for _, d in ours] == [d for _, d in theirs]


@pytest.mark.parametrize("name", MODULES)
def test_module_constructor_matches_torch(name):
    ours, theirs = _params(getattr(nnn, name).__init__), _params(getattr(torch.nn, name).__init__)
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    assert [d for _, d in ours] == [d for _, d in theirs]


@pytest.mark.parametrize("name", MODULES)
def test_module_state_dict_keys_match_torch(name):
    args = (2, 4) if name == "GroupNorm" else (4,)
    kwargs = {"affine": True, "track_running_stats": True} if name.startswith("InstanceNorm") else {}
    ours, theirs = getattr(nnn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
