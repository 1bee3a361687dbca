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
# change to normlib, to the pinned packages or to the measurements a chapter
# reads (benchmarks/*.json) must clear the cache, or the site would show
# outputs computed from old code or old figures.
SRC_HASH := $(shell cat normlib/*.py normlib/csrc/* normbook/*.py requirements.txt benchmarks/*.json 2>/dev/null | sha256sum | cut -c1-16)
CACHE_KEY := _build/.source-$(SRC_HASH)

.PHONY: book test unit nbval book-strict browser venv clean

venv: $(STAMP)

# normlib.fused compiles its C kernels on first use with the system C
# compiler (Debian's gcc, installed here when missing; root or sudo); the
# last step builds them once, and fails loudly if they cannot be built.
$(STAMP): requirements.txt pyproject.toml
	command -v $${CC:-cc} >/dev/null || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ".[book]"
	$(PY) -c "from normlib import fused; assert fused.available(), fused.status"
	touch $(STAMP)

$(CACHE_KEY):
	rm -rf _build/.jupyter_cache _build/.doctrees _build/html _build/.source-*
	mkdir -p _build && touch $@

# Chapters without a cached result are executed two at a time into Jupyter
# Book's own cache first (benchmarks/execute_parallel.py); the build then renders.
book: $(STAMP) $(CACHE_KEY)
	$(PY) benchmarks/execute_parallel.py _build/.jupyter_cache
	$(JB) build . --builder html

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval --nbval-current-env -p no:randomly chapters

book-strict: $(STAMP) $(CACHE_KEY)
	$(PY) benchmarks/execute_parallel.py _build/.jupyter_cache
	$(JB) build . --builder html --warningiserror --keep-going

# The browser test: Debian's Chromium (Playwright's own download needs a CDN),
# installed here when missing so a fresh CI machine gets it; root or sudo.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# First prove the checker catches each defect on a small broken site (and test
# the bibliography style), then open every page of the strictly built book
# offline; screenshots in _build/screenshots/.
browser: $(STAMP) $(CHROMIUM) book-strict
	$(PY) -m pytest -q tools
	$(PY) tools/browser/check_site.py _build/html --chromium $(CHROMIUM)

test: unit nbval book-strict browser

clean:
	rm -rf _build
