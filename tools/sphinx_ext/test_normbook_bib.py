"""The bibliography style: author-year labels, source articles last and by number, titles as written."""
from __future__ import annotations

import sys
from pathlib import Path

from pybtex.database import parse_string

sys.path.insert(0, str(Path(__file__).parent))
import normbook_bib  # noqa: E402

BIB = r"""
@misc{seed003, title = {Batch Norm and other Normalizations}}
@misc{seed000, title = {What are {BN}, {LN}, {IN} and {GN}?}}
@article{wu2018group, author = {Yuxin Wu and Kaiming He}, title = {Group Normalization}, journal = {ECCV}, year = {2018}}
@article{ba2016layer, author = {Jimmy Lei Ba and Jamie Ryan Kiros and Geoffrey E. Hinton},
         title = {Layer Normalization}, journal = {arXiv}, year = {2016}}
@article{vanlaarhoven2017l2, author = {Twan van Laarhoven}, title = {L2 Regularization}, journal = {arXiv}, year = {2017}}
@article{wu2018b, author = {Yuxin Wu and Kaiming He}, title = {Another}, journal = {X}, year = {2018}}
"""


def _formatted():
    data = parse_string(BIB, "bibtex")
    return list(normbook_bib.BookStyle().format_entries(data.entries.values()))


def test_labels_are_author_year_and_source_articles_by_number():
    labels = [e.label for e in _formatted()]
    assert labels == [
        "Ba et al., 2016",
        "van Laarhoven, 2017",
        "Wu and He, 2018a",
        "Wu and He, 2018b",
        "Source article 000",
        "Source article 003",
    ]


def test_titles_keep_their_case():
    text = {e.key: e.text.render_as("text") for e in _formatted()}
    assert "Layer Normalization." in text["ba2016layer"]
    assert "What are BN, LN, IN and GN?" in text["seed000"]


def test_seed_number_only_for_seed_keys():
    data = parse_string(BIB, "bibtex")
    assert normbook_bib.seed_number(data.entries["seed003"]) == "003"
    assert normbook_bib.seed_number(data.entries["wu2018group"]) is None
