"""Set-up shared by every chapter, so executed outputs are the same run after run.

Fixed seeds, a fixed thread count (float reductions can change in the last bits
with the number of threads), stable print formats and figure defaults.
"""
from __future__ import annotations

import random

import numpy as np
import torch

THREADS = 2  # the book's machines have 2 cores; fixed so results do not depend on the reader's


def setup(seed: int = 0) -> None:
    """Seed Python, NumPy and torch; fix threads, print precision and figure style."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    # torch.use_deterministic_algorithms(True, warn_only=True) without its import of
    # torch._inductor.config (1.5 s, a third of a chapter's start-up), done only to set
    # the compiler's own flag: no chapter compiles, and ATen's flag is the one that counts
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    np.set_printoptions(precision=4, suppress=True, floatmode="fixed", linewidth=100)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.figsize": (6.4, 4.0),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
        }
    )


#: The MIME prefix under which myst-nb reads a glued value that is not displayed.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, variable, display: bool = True) -> None:
    """Store ``variable``'s displayed value under ``name`` for ``{glue:text}`` in the page's text.

    What ``myst_nb.glue`` publishes, bit for bit (``tests/normbook/test_notebook.py``
    compares the two), without importing myst-nb's glue module, which imports
    Sphinx: 2 s of a chapter's start-up, for a function of five lines.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    bundle, metadata = format_display_data(variable)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
