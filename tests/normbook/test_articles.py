"""The source articles' data in normbook.articles: shapes, provenance, and what it implies."""
import ast
import doctest
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from normbook import articles
from normbook.articles import (
    SEED000_BN_A_PRINTED, SEED000_BN_VAR_PRINTED, SEED000_LN_A_PRINTED, SEED000_LN_MEAN_PRINTED,
    SEED000_LN_VAR_PRINTED, SEED001_BN_NUMPY_PRINT, SEED001_BN_STATS_PRINT,
    SEED001_BN_TORCH_PRINT, SEED001_LN_NUMPY_PRINT, SEED001_LN_STATS_PRINT,
    SEED001_LN_TORCH_PRINT, printed_numbers, seed000_batch, seed001_features, seed001_tokens,
)


def no_space(s: str) -> str:
    return re.sub(r"\s", "", s)


def test_docstring_examples_hold():
    result = doctest.testmod(articles)
    assert result.attempted >= 5 and result.failed == 0


def test_seed000_batch_shape_dtype_and_first_channel():
    x = seed000_batch()
    assert x.shape == (3, 4, 1, 2) and x.dtype == np.float64
    assert seed000_batch(np.float32).dtype == np.float32
    assert x[:, 0].ravel().tolist() == [2, 3, 0, 1, 1, 2]


def test_each_call_returns_a_fresh_array():
    for make in (seed000_batch, seed001_features, seed001_tokens):
        first = make()
        first[...] = -99
        assert (make() != -99).all(), make.__name__


def test_seed000_bn_table_is_right_to_its_three_decimals():
    x = seed000_batch()
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    bn_a = ((x - mean) / np.sqrt(var + articles.SEED000_EPS))[0]
    assert np.abs(bn_a - np.array(SEED000_BN_A_PRINTED)).max() < 0.0005
    assert round(float(var[0, 0, 0, 0]), 3) == SEED000_BN_VAR_PRINTED


def test_seed000_ln_table_differs_only_in_its_third_value():
    a = seed000_batch()[0]
    assert a.mean() == SEED000_LN_MEAN_PRINTED and round(a.var(), 3) == SEED000_LN_VAR_PRINTED
    ln_a = ((a - a.mean()) / np.sqrt(a.var() + articles.SEED000_EPS)).ravel()
    wrong = np.flatnonzero(ln_a.round(3) != np.ravel(SEED000_LN_A_PRINTED))
    assert wrong.tolist() == [2]


def test_seed001_features_statistics_are_the_printed_ones_exactly():
    x = seed001_features()
    assert x.shape == (2, 4, 2, 2) and x.dtype == np.float32
    printed = []
    for c in range(4):
        printed += [str(x[:, c].mean()), str(x[:, c].var())]
    assert printed == SEED001_BN_STATS_PRINT


def test_seed001_bn_torch_print_is_reproduced():
    with torch.no_grad():
        y = torch.nn.BatchNorm2d(4)(torch.from_numpy(seed001_features()))
    text = str(y).replace("tensor(", "").split(")")[0]
    assert no_space(text) in no_space(SEED001_BN_TORCH_PRINT)
    assert SEED001_BN_TORCH_PRINT.endswith("grad_fn=<NativeBatchNormBackward0>)")


def test_seed001_tokens_layout_and_printed_statistics():
    t = seed001_tokens()
    assert t.shape == (2, 4, 3) and t.dtype == np.float32 and t.flags.c_contiguous
    np.testing.assert_array_equal(t[1, 2], [-1, 3, 1])
    stats = [s for row in t.reshape(-1, 3) for s in (str(row.mean()), str(row.var()))]
    assert stats == SEED001_LN_STATS_PRINT


def test_seed001_ln_torch_print_matches_to_four_decimals():
    with torch.no_grad():
        y = torch.nn.LayerNorm(3)(torch.from_numpy(seed001_tokens())).numpy()
    printed = printed_numbers(SEED001_LN_TORCH_PRINT).reshape(y.shape)
    np.testing.assert_array_equal(np.round(y.astype(np.float64), 4) + 0.0, printed)


@pytest.mark.parametrize(
    "text, size",
    [(SEED001_BN_TORCH_PRINT, 32), (SEED001_BN_NUMPY_PRINT, 32),
     (SEED001_LN_TORCH_PRINT, 24), (SEED001_LN_NUMPY_PRINT, 24)],
)
def test_printed_numbers_finds_every_value(text, size):
    assert printed_numbers(text).shape == (size,)


def test_printed_numbers_skips_grad_fn_and_keeps_signs():
    v = printed_numbers("tensor([[-0.5, 2.], [ 0.,  1e-3]], grad_fn=<Add0Backward1>)")
    assert v.tolist() == [-0.5, 2.0, 0.0, 0.001]
    assert printed_numbers("[1.5 -2.25]", np.float32).dtype == np.float32


def _seeds_dir():
    for d in (os.environ.get("NORMBOOK_SEEDS"),
              Path(__file__).resolve().parents[3] / "shared" / "seeds",
              "/work/shared/seeds"):
        if d and Path(d).is_dir():
            return Path(d)
    pytest.skip("the source articles' text is not on this machine (set NORMBOOK_SEEDS)")


def _page(prefix):
    return next(_seeds_dir().glob(f"{prefix}_*.txt")).read_text(encoding="utf-8")


def test_seed000_data_are_copied_verbatim_from_the_article():
    page = _page("000")
    for name, value in [("a", articles.SEED000_A), ("b", articles.SEED000_B),
                        ("c", articles.SEED000_C)]:
        literal = re.search(rf"^{name} = (\[.*\])$", page, re.M).group(1)
        assert ast.literal_eval(literal) == value
    tables = [ast.literal_eval(t) for t in re.findall(r"^a ← (\[.*\])$", page, re.M)]
    assert tables[0] == SEED000_BN_A_PRINTED and tables[1] == SEED000_LN_A_PRINTED
    assert "= 0.917" in page and "= 9.625" in page and "= 35.734" in page


def test_seed001_data_are_copied_verbatim_from_the_article():
    page = _page("001")
    arrays = [ast.literal_eval(no_space(s))
              for s in re.findall(r"np\.array\((\[.*?\]\]\]\])", page)]
    assert arrays[0] == articles.SEED001_FEATURES
    assert articles.SEED001_LN_FEATURES in arrays
    for text in (SEED001_BN_TORCH_PRINT, SEED001_BN_NUMPY_PRINT, SEED001_LN_TORCH_PRINT,
                 SEED001_LN_NUMPY_PRINT, "\n".join(SEED001_BN_STATS_PRINT),
                 "\n".join(SEED001_LN_STATS_PRINT)):
        assert text in page
