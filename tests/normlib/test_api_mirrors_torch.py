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


OLD_STATE = [("BatchNorm1d", {}), ("BatchNorm2d", {}), ("BatchNorm3d", {}),
             ("InstanceNorm2d", {"track_running_stats": True, "affine": True})]


@pytest.mark.parametrize("name,kwargs", OLD_STATE, ids=[n for n, _ in OLD_STATE])
def test_strict_load_of_an_old_state_dict_without_num_batches_tracked_as_in_torch(name, kwargs):
    """Issue 16 item 9: a checkpoint from before num_batches_tracked (no version metadata) loads
    strictly in torch; normlib said 'Missing key(s) in state_dict: "num_batches_tracked"'."""
    ref = getattr(torch.nn, name)(4, **kwargs)
    with torch.no_grad():
        ref.running_mean.uniform_()
    old = {k: v for k, v in ref.state_dict().items() if k != "num_batches_tracked"}  # a plain dict
    for module in (getattr(torch.nn, name)(4, **kwargs), getattr(nnn, name)(4, **kwargs)):
        wrapped = torch.nn.Sequential(module)
        wrapped.load_state_dict({f"0.{k}": v for k, v in old.items()}, strict=True)
        assert torch.equal(module.running_mean, ref.running_mean) and int(module.num_batches_tracked) == 0


def test_a_version_2_state_dict_still_needs_num_batches_tracked_as_in_torch():
    state = torch.nn.BatchNorm2d(4).state_dict()  # carries _metadata version 2
    del state["num_batches_tracked"]
    for module in (torch.nn.BatchNorm2d(4), nnn.BatchNorm2d(4)):
        with pytest.raises(RuntimeError, match='Missing key.*"num_batches_tracked"'):
            module.load_state_dict(state, strict=True)
