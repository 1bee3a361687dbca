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

.PHONY: book test unit nbval nbval-fused nbval-unfused book-strict browser venv clean

venv: $(STAMP)

# normlib.fused compiles its C kernels on first use with the system C compiler
# ($CC, else cc). The kernels are an optimization: when cc is missing and
# apt-get is there, Debian's gcc is installed (root or sudo; CI relies on it);
# otherwise, or when the build fails, the set-up says so in one line and goes
# on, and the book runs on normlib's slower whole-tensor path.
# REQUIRE_FUSED=1 (set by .ci/run) turns a failed build into an error.
$(STAMP): requirements.txt pyproject.toml
	@set -- $${CC:-cc}; command -v "$$1" >/dev/null || ! command -v apt-get >/dev/null || \
	  { $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev; } || \
	  echo "make venv: could not install gcc with apt-get; going on without the fused kernels"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ".[book]"
	@$(PY) -W ignore::RuntimeWarning -c "$$FUSED_REPORT"
	touch $(STAMP)

# One line on the kernels; exits non-zero only when REQUIRE_FUSED=1 and they did not build.
define FUSED_REPORT
import os, sys
from normlib import fused
if fused.available():
    print("make venv: normlib's fused C kernels are built")
else:
    print("make venv: no fused C kernels (" + fused.status.splitlines()[0][:160] + "); "
          "the book runs on normlib's slower whole-tensor path")
    sys.exit(os.environ.get("REQUIRE_FUSED") == "1")
endef
export FUSED_REPORT

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

# Every chapter executed fresh under nbval (its outputs compared with the
# committed ones) twice: with the fused C kernels and with NORMLIB_FUSED=0, the
# path of a machine without a C compiler; the chapters' compared outputs must
# not depend on the path. nbval keeps about one core busy, so the two passes run
# side by side (make -j2, logs kept apart); passive OpenMP waiting keeps a
# chapter's two torch threads from spinning against the other pass.
NBVAL := $(PY) -m pytest --nbval --nbval-current-env -p no:randomly -q chapters

nbval: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target nbval-fused nbval-unfused

nbval-fused: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(NBVAL)

nbval-unfused: $(STAMP)
	NORMLIB_FUSED=0 OMP_WAIT_POLICY=PASSIVE $(NBVAL)

# The strict build of `make test` renders the committed outputs without executing
# them again (execute_notebooks: off, into _build/test/): the fresh execution has
# just been tested by nbval, in the same run, on both paths, and nbval fails
# unless each compared output of the committed notebook is what a fresh run
# prints. What is left to test here is the rendering: every warning an error.
# `make book` still executes every chapter (through its cache) for the site.
TEST_OUT := _build/test

book-strict: $(STAMP)
	mkdir -p $(TEST_OUT)
	# (Jupyter Book reads local_extensions relative to the config file: made absolute)
	sed -e 's/^\(  execute_notebooks:\) cache$$/\1 "off"/' \
	  -e 's#^\(    normbook_bib:\) tools/sphinx_ext$$#\1 $(CURDIR)/tools/sphinx_ext#' \
	  _config.yml > $(TEST_OUT)/_config.yml
	grep -q '^  execute_notebooks: "off"$$' $(TEST_OUT)/_config.yml
	grep -q '^    normbook_bib: /' $(TEST_OUT)/_config.yml
	$(JB) build . --config $(TEST_OUT)/_config.yml --path-output $(TEST_OUT) \
	  --builder html --warningiserror --keep-going

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
	$(PY) tools/browser/check_site.py $(TEST_OUT)/_build/html --chromium $(CHROMIUM)

test: unit nbval book-strict browser

clean:
	rm -rf _build
