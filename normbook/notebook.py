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
    torch.use_deterministic_algorithms(True, warn_only=True)
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
