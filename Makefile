# The two commands of the README: `make book` and `make test`.
# Each creates .venv from requirements.txt when it is missing or out of date.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JB     := $(VENV)/bin/jupyter-book
STAMP  := $(VENV)/.installed

# jupyter-cache keys a notebook on its code cells only, not on normlib: a
# change to normlib (or to the pinned packages) must clear the cache, or the
# site would show outputs computed by old code.
SRC_HASH := $(shell cat normlib/*.py requirements.txt 2>/dev/null | sha256sum | cut -c1-16)
CACHE_KEY := _build/.source-$(SRC_HASH)

.PHONY: book test unit nbval book-strict venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(CACHE_KEY):
	rm -rf _build/.jupyter_cache _build/.doctrees _build/html _build/.source-*
	mkdir -p _build && touch $@

book: $(STAMP) $(CACHE_KEY)
	$(JB) build . --builder html

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval --nbval-current-env -p no:randomly chapters

book-strict: $(STAMP) $(CACHE_KEY)
	$(JB) build . --builder html --warningiserror --keep-going

test: unit nbval book-strict

clean:
	rm -rf _build
