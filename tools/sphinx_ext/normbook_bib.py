"""Citation styles for normbook: one author–year label, in the text and in the bibliography.

sphinxcontrib-bibtex's ``author_year`` style cites "[Ioffe and Szegedy, 2015]"
in the text, but its default list style labels the same entry "[IS15]", and an
entry with no author (the five source articles, keys ``seed000`` ...
``seed004``) is cited by its whole title plus "n.d.".  This extension registers

* ``bibtex_reference_style: normbook``: author–year in the text; a source article
  is cited as "[Source article 003]";
* ``bibtex_default_style: normbook``: the bibliography labels each entry with the
  same text the citations show, sorts by author and year (source articles last,
  by number), and keeps titles as the .bib file writes them (pybtex's default
  lowercases them: "Layer normalization", "what are bn, ln ...").
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting
from pybtex.style.template import FieldIsMissing, first_of, node, optional, sentence, tag
from pybtex.style.template import field as bib_field
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.template import join, join2, names, post_text, pre_text, reference

SEED = re.compile(r"seed(\d+)$")


def seed_number(entry) -> str | None:
    """``'003'`` for the source article ``seed003``, None for any other entry."""
    m = SEED.match(entry.key)
    return m.group(1) if m else None


# -- in the text ---------------------------------------------------------------
@node
def source_article(children, data):
    number = seed_number(data["entry"])
    if number is None:
        raise FieldIsMissing("author", data["entry"])
    return Text(f"Source article {number}")


@node
def who(children, data, **kwargs):
    """The source article's number, else the authors, else the editors, else the title."""
    return first_of[
        optional[source_article],
        optional[names("author", **kwargs)],
        optional[names("editor", **kwargs)],
        tag("em")[bib_field("title")],
    ].format_data(data)


@node
def when(children, data):
    """The year ("n.d." if missing); nothing for a source article, whose label says enough."""
    if seed_number(data["entry"]) is not None:
        return Text()
    return first_of[optional[bib_field("year")], "n.d."].format_data(data)


@dataclass
class BookPersonStyle(PersonStyle):
    def author_or_editor_or_title(self, full: bool):
        return who(sep=self.sep, sep2=self.sep2, last_sep=self.last_sep, other=None if full else self.other)


@dataclass
class BookParentheticalStyle(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[join(sep=self.author_year_sep)[self.person.author_or_editor_or_title(full="s" in role_name), when]],
            post_text,
        ]


@node
def per_entry(children, data, seed=None, other=None):
    """Format with template ``seed`` for a source article, with ``other`` for any other entry."""
    return (seed if seed_number(data["entry"]) is not None else other).format_data(data)


@dataclass
class BookTextualStyle(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str):
        # "Ba et al. [2016]", but "Source article 003" (all of it the link), not "... [n.d.]"
        seed = join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[pre_text, reference[source_article], post_text]
        return per_entry(seed=seed, other=super().inner(role_name))


@dataclass
class BookReferenceStyle(AuthorYearReferenceStyle):
    person: PersonStyle = field(default_factory=BookPersonStyle)

    def __post_init__(self):
        super().__post_init__()
        par = BookParentheticalStyle(
            bracket=self.bracket_parenthetical,
            person=self.person,
            author_year_sep=self.author_year_sep,
            pre_text_sep=self.pre_text_sep,
            post_text_sep=self.post_text_sep,
        )
        txt = BookTextualStyle(
            bracket=self.bracket_textual,
            person=self.person,
            text_reference_sep=self.text_reference_sep,
            pre_text_sep=self.pre_text_sep,
            post_text_sep=self.post_text_sep,
        )
        swap = {BasicAuthorYearParentheticalReferenceStyle: par, BasicAuthorYearTextualReferenceStyle: txt}
        self.styles = [swap.get(type(s), s) for s in self.styles]
        for style in (par, txt):
            self.role_style.update((role, style) for role in style.role_names())


# -- in the bibliography ---------------------------------------------------------
def _last(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


def author_year_label(entry) -> str:
    """The text of the entry's parenthetical citation: "Ba et al., 2016"."""
    number = seed_number(entry)
    if number is not None:
        return f"Source article {number}"
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    if not persons:
        who_ = entry.fields.get("title", entry.key)
    elif len(persons) == 1:
        who_ = _last(persons[0])
    elif len(persons) == 2:
        who_ = f"{_last(persons[0])} and {_last(persons[1])}"
    else:
        who_ = f"{_last(persons[0])} et al."
    return f"{who_}, {entry.fields.get('year', 'n.d.')}"


class BookLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year_label(e) for e in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:  # "Wu and He, 2018a", "Wu and He, 2018b" if two share a label
            if count[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class BookSortingStyle(AuthorYearTitleSorting):
    def sorting_key(self, entry):
        number = seed_number(entry)
        if number is not None:
            return (1, number, "", "")
        return (0, *super().sorting_key(entry))


class BookStyle(UnsrtStyle):
    default_label_style = "normbook"
    default_sorting_style = "normbook"

    def format_title(self, e, which_field, as_sentence=True):
        title = bib_field(which_field)  # as written in references.bib, not lowercased
        return sentence[title] if as_sentence else title


register_plugin("sphinxcontrib.bibtex.style.referencing", "normbook", BookReferenceStyle)
pybtex.plugin.register_plugin("pybtex.style.labels", "normbook", BookLabelStyle)
pybtex.plugin.register_plugin("pybtex.style.sorting", "normbook", BookSortingStyle)
pybtex.plugin.register_plugin("pybtex.style.formatting", "normbook", BookStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
