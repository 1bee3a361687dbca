"""The source articles' worked examples, as data, with where each comes from.

The book re-derives the numbers of five web articles (``../shared/seeds/``, cited
as ``seed000`` … ``seed004`` in ``references.bib``).  Their inputs are defined
here once, so every chapter imports the same numbers instead of typing them
again; what the articles *print* for them (and where their last digits are
wrong) is the subject of the appendix "The source articles, digit by digit".
"""
from __future__ import annotations

import numpy as np

#: Source article 000 ("BN, LN, IN, GN: what are they?"): a batch of N = 3 inputs
#: a, b, c with C = 4 channels, H = 1, W = 2, normalized with ε = 1e-5.
SEED000_A = [[[2, 3]], [[5, 7]], [[11, 13]], [[17, 19]]]
SEED000_B = [[[0, 1]], [[1, 2]], [[3, 5]], [[8, 13]]]
SEED000_C = [[[1, 2]], [[3, 4]], [[5, 6]], [[7, 8]]]
SEED000_EPS = 1e-5


def seed000_batch(dtype=np.float64) -> np.ndarray:
    """Source article 000's batch ``[a, b, c]`` as an ``(N, C, H, W) = (3, 4, 1, 2)`` array.

    >>> seed000_batch().shape
    (3, 4, 1, 2)
    >>> float(seed000_batch()[:, 0].mean())  # the article's μ for a's first coefficient
    1.5
    """
    return np.array([SEED000_A, SEED000_B, SEED000_C], dtype=dtype)
