"""The source articles' worked examples, as data, with where each comes from.

The book re-derives the numbers of five web articles (``../shared/seeds/``, cited
as ``seed000`` … ``seed004`` in ``references.bib``).  Their inputs are defined
here once, so every chapter imports the same numbers instead of typing them
again; what the articles *print* for them (and where their last digits are
wrong) is the subject of the appendix "The source articles, digit by digit".
"""
from __future__ import annotations

import re

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


# --- What source article 000 prints for a, b, c (its tables, three decimals) -------------

#: Article 000's Batch Norm of a, as printed: "a ← [ [[0.522, 1.567]], [[0.676, 1.690]],
#: [[1.071, 1.630]], [[1.066, 1.492]] ]" (three decimals, shape (C, H, W) = (4, 1, 2)).
SEED000_BN_A_PRINTED = [[[0.522, 1.567]], [[0.676, 1.690]], [[1.071, 1.630]], [[1.066, 1.492]]]
#: Article 000's variance of BN's set for a's first entry, "var(2, 3, 0, 1, 1, 2) = 0.917".
SEED000_BN_VAR_PRINTED = 0.917
#: Article 000's Layer Norm of a, as printed: "a ← [ [[-1.276, -1.108]], [[-0.773, -0.439]],
#: [[0.230, 0.565]], [[1.234, 1.568]] ]" (the third value is off by one in the last digit).
SEED000_LN_A_PRINTED = [
    [[-1.276, -1.108]], [[-0.773, -0.439]], [[0.230, 0.565]], [[1.234, 1.568]]
]
#: Article 000's Layer Norm statistics of a: "mean(2, 3, 5, 7, 11, 13, 17, 19) = 9.625",
#: "var(...) = 35.734".
SEED000_LN_MEAN_PRINTED = 9.625
SEED000_LN_VAR_PRINTED = 35.734


# --- Source article 001 ("Normalization in PyTorch: BatchNorm, LayerNorm and GroupNorm") -----

#: Article 001's ``feature_array`` for ``nn.BatchNorm2d(num_features=4, eps=1e-5)`` (and for
#: ``nn.GroupNorm(num_groups=2, num_channels=4)``): (N, C, H, W) = (2, 4, 2, 2), float32.
SEED001_FEATURES = [
    [[[1, 0], [0, 2]], [[3, 4], [1, 2]], [[-2, 9], [7, 5]], [[2, 3], [4, 2]]],
    [[[1, 2], [-1, 0]], [[1, 2], [3, 5]], [[4, 7], [-6, 4]], [[1, 4], [1, 5]]],
]
#: Article 001's ``feature_array`` for its LayerNorm example: (2, 3, 2, 2), float32 (channel
#: 2 of SEED001_FEATURES dropped), reshaped by the article into 2 sequences of 4 tokens.
SEED001_LN_FEATURES = [
    [[[1, 0], [0, 2]], [[3, 4], [1, 2]], [[2, 3], [4, 2]]],
    [[[1, 2], [-1, 0]], [[1, 2], [3, 5]], [[1, 4], [1, 5]]],
]
#: ``print(bn_out)`` of article 001, as on the page (its line breaks were lost).
SEED001_BN_TORCH_PRINT = (
    "tensor([[[[ 0.3780, -0.6299],[-0.6299,  1.3859]],[[ 0.2847,  1.0441],[-1.2339, -0.4746]],"
    "[[-1.1660,  1.1660],[ 0.7420,  0.3180]],[[-0.5388,  0.1796],[ 0.8980, -0.5388]]],"
    "[[[ 0.3780,  1.3859],[-1.6378, -0.6299]],[[-1.2339, -0.4746],[ 0.2847,  1.8034]],"
    "[[ 0.1060,  0.7420],[-2.0140,  0.1060]],[[-1.2572,  0.8980],[-1.2572,  1.6164]]]], "
    "grad_fn=<NativeBatchNormBackward0>)"
)
#: The mean and the variance article 001's NumPy loop prints for each of the 4 channels.
SEED001_BN_STATS_PRINT = [
    "0.625", "0.984375", "2.625", "1.734375", "3.5", "22.25", "2.75", "1.9375"
]
#: ``print(feature_array)`` after article 001's NumPy loop ``(x - mean) / np.sqrt(var + 1e-5)``
#: per channel, in float32, as on the page.
SEED001_BN_NUMPY_PRINT = (
    "[[[[ 0.37796253 -0.6299376 ][-0.6299376   1.3858627 ]][[ 0.28474656  1.0440707 ]"
    "[-1.2339017  -0.4745776 ]][[-1.1659975   1.1659975 ][ 0.7419984   0.3179993 ]]"
    "[[-0.53881454  0.17960484][ 0.8980242  -0.53881454]]][[[ 0.37796253  1.3858627 ]"
    "[-1.6378376  -0.6299376 ]][[-1.2339017  -0.4745776 ][ 0.28474656  1.8033949 ]]"
    "[[ 0.10599977  0.7419984 ][-2.0139956   0.10599977]][[-1.2572339   0.8980242 ]"
    "[-1.2572339   1.6164436 ]]]]"
)
#: ``print(ln_out)`` of article 001's ``nn.LayerNorm(normalized_shape=3)``, as on the page.
SEED001_LN_TORCH_PRINT = (
    "tensor([[[-1.2247,  1.2247,  0.0000],[-1.3728,  0.9806,  0.3922],"
    "[-0.9806, -0.3922,  1.3728],[ 0.0000,  0.0000,  0.0000]],[[ 0.0000,  0.0000,  0.0000],"
    "[-0.7071, -0.7071,  1.4142],[-1.2247,  1.2247,  0.0000],[-1.4142,  0.7071,  0.7071]]], "
    "grad_fn=<NativeLayerNormBackward0>)"
)
#: The mean and the variance article 001's NumPy loop prints for each of the 8 tokens.
SEED001_LN_STATS_PRINT = [
    "2.0", "0.6666667", "2.3333333", "2.888889", "1.6666666", "2.888889", "2.0", "0.0",
    "1.0", "0.0", "2.6666667", "0.88888884", "1.0", "2.6666667", "3.3333333", "5.555556",
]
#: ``print(...)`` of article 001's NumPy LayerNorm loop (float32), as on the page.
SEED001_LN_NUMPY_PRINT = (
    "[[[-1.2247357   1.2247357   0.        ][-1.3728105   0.980579    0.3922316 ]"
    "[-0.98057896 -0.39223155  1.3728106 ][ 0.          0.          0.        ]]"
    "[[ 0.          0.          0.        ][-0.70710295 -0.70710295  1.4142056 ]"
    "[-1.2247427   1.2247427   0.        ][-1.4142123   0.7071062   0.7071062 ]]]"
)


def seed001_features(dtype=np.float32) -> np.ndarray:
    """Source article 001's BatchNorm/GroupNorm input, ``(N, C, H, W) = (2, 4, 2, 2)``.

    Every channel holds 8 small integers, so in float32 each channel mean is an
    exact multiple of 1/8 and each biased variance of 1/64.

    >>> seed001_features().shape, seed001_features().dtype
    ((2, 4, 2, 2), dtype('float32'))
    """
    return np.array(SEED001_FEATURES, dtype=dtype)


def seed001_tokens(dtype=np.float32) -> np.ndarray:
    """Source article 001's LayerNorm input: 2 sequences of 4 tokens with 3 features.

    The article builds a ``(2, 3, 2, 2)`` array, flattens the 2 × 2 positions and
    swaps the axes: ``x.reshape(2, 3, -1).transpose(0, 2, 1)``, the
    ``(batch, tokens, dim)`` layout of a transformer block.

    >>> seed001_tokens()[0, 0].tolist()  # sequence 0, token 0
    [1.0, 3.0, 2.0]
    """
    x = np.array(SEED001_LN_FEATURES, dtype=dtype)
    return np.ascontiguousarray(x.reshape(2, 3, -1).transpose(0, 2, 1))


def printed_numbers(text: str, dtype=np.float64) -> np.ndarray:
    """The numbers in a printed array or tensor, in reading order, as a flat array.

    Brackets, commas, ``tensor(`` and ``grad_fn=...`` are skipped; use
    ``.reshape(shape)`` to restore the printed array's shape.

    >>> printed_numbers("tensor([[ 0.3780, -0.6299]], grad_fn=<X>)").tolist()
    [0.378, -0.6299]
    """
    body = text.split("grad_fn")[0]
    number = r"(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
    return np.array(re.findall(number, body), dtype=dtype)
