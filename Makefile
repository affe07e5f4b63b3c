# The two commands of the README:
#   make book   build the book (HTML under _build/html)
#   make test   unit tests, every chapter executed and checked, the book built
# Each creates .venv from requirements.txt on first use (Python 3.10+).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test unit chapters built env clean help cache-check jupyterlab-test

help:
	@echo "make book   build the book into _build/html"
	@echo "make test   run all tests (unit, chapters, book build, built-HTML checks)"
	@echo "make unit   unit tests of the package only (fast)"
	@echo "make clean  remove _build (keeps .venv)"
	@echo "make jupyterlab-test  the reader edition in JupyterLab + Chromium, with ipywidgets 8 and 7 (own venvs)"

$(STAMP): requirements.txt requirements-kernels.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-kernels.txt
	@touch $(STAMP)

env: $(STAMP)

# The execution cache is keyed on notebook sources only; drop it when the
# package changes, so no page shows outputs of older code.
# LOSSLAB_SOLUTIONS=0 (an edition without solutions) changes outputs too.
PKG_HASH := $(shell (find code -type f \( -name '*.py' -o -name '*.toml' -o -name '*.js' -o -name '*.css' -o -name '*.cu' -o -name '*.json' \) | sort | xargs cat; echo "solutions=$(LOSSLAB_SOLUTIONS)") | sha1sum | cut -c1-12)
cache-check:
	@if [ ! -f _build/.package-$(PKG_HASH) ]; then \
	  rm -rf _build/.jupyter_cache _build/.package-*; mkdir -p _build; touch _build/.package-$(PKG_HASH); \
	  echo "package changed: cleared the notebook execution cache"; fi

book: $(STAMP) cache-check
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build . --all --warningiserror --keep-going && \
	echo "book built in $$(( $$(date +%s) - start )) s: open _build/html/index.html"

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not chapters and not built"

chapters: $(STAMP)
	$(BIN)/python -m pytest -m chapters

built: $(STAMP)
	$(BIN)/python -m pytest -m built -n 2 --dist loadfile

# Chapters run once, in the chapter tests (timed, offline); they fill the
# build's execution cache, so `book` reuses their outputs. Two workers, one
# per core, a test file per worker: the chapter contract (each notebook
# executed once) beside the other files; the built-book tests likewise.
test: $(STAMP) cache-check
	$(BIN)/python -m pytest -m "not built" -n 2 --dist loadfile
	$(MAKE) --no-print-directory book
	$(BIN)/python -m pytest -m built -n 2 --dist loadfile

# The reader edition in JupyterLab (tests/test_jupyterlab.py): not in `make test` (JupyterLab is not
# pinned, and CI's time is spent). Two environments of its own, the pinned one plus JupyterLab: with the
# pinned ipywidgets 8, and with the last ipywidgets 7 (what hosted services may ship). CPU torch first.
JLAB_PIP := --quiet
# PyTorch's CPU wheels (not PyPI's CUDA build); empty where pip already finds a CPU build (a local wheelhouse).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU := torch==2.13.0 $(if $(TORCH_CPU_INDEX),--index-url $(TORCH_CPU_INDEX))
.venv-jlab/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv .venv-jlab
	.venv-jlab/bin/python -m pip install $(JLAB_PIP) $(TORCH_CPU)
	.venv-jlab/bin/python -m pip install $(JLAB_PIP) -r requirements.txt jupyterlab==4.6.6
	@touch $@
.venv-jlab7/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv .venv-jlab7
	.venv-jlab7/bin/python -m pip install $(JLAB_PIP) $(TORCH_CPU)
	.venv-jlab7/bin/python -m pip install $(JLAB_PIP) -r requirements.txt jupyterlab==4.6.6
	.venv-jlab7/bin/python -m pip install $(JLAB_PIP) ipywidgets==7.8.5 "widgetsnbextension~=3.6.0" "jupyterlab_widgets~=1.1"
	@touch $@
jupyterlab-test: .venv-jlab/.installed .venv-jlab7/.installed
	.venv-jlab/bin/python -m pytest -m jupyterlab -s tests/test_jupyterlab.py
	.venv-jlab7/bin/python -m pytest -m jupyterlab -s tests/test_jupyterlab.py

clean:
	rm -rf _build
