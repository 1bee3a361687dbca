"""The set-up every chapter runs first: seeds, threads, determinism, and a cheap start."""
import subprocess
import sys

_PROBE = """
import sys, torch
from normbook.notebook import setup, THREADS
setup()
assert torch.are_deterministic_algorithms_enabled()
assert torch.is_deterministic_algorithms_warn_only_enabled()
assert torch.get_num_threads() == THREADS
a = torch.rand(4)
setup()
assert torch.equal(a, torch.rand(4))  # the same seed, the same draws
print('torch._inductor' in sys.modules)
"""


def test_setup_seeds_and_turns_on_deterministic_algorithms_without_importing_the_compiler():
    # in a fresh process: setup() changes process-wide state (threads) the other tests rely on
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_glue_publishes_what_myst_nb_glue_publishes(monkeypatch):
    import IPython.display
    import pytest

    import normbook.notebook as nb

    glue_module = pytest.importorskip("myst_nb.ext.glue")
    assert nb.GLUE_PREFIX == glue_module.GLUE_PREFIX
    published = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: published.append((a, k)))
    monkeypatch.setattr(glue_module, "ipy_display", lambda *a, **k: published.append((a, k)))
    for display in (True, False):
        for value in (0.125, "text", [1, 2]):
            published.clear()
            nb.glue("key", value, display=display)
            glue_module.glue("key", value, display=display)
            assert len(published) == 2 and published[0] == published[1]
