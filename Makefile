# schurjax: two commands do all the set-up on a fresh machine.
#   make demo   create .venv if missing, install, run the main job on the shipped zoo
#   make test   create .venv if missing, install with the dev extras, run ruff, the test suite and the doctests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The project's machines carry a CPU build of torch on disk; the pin keeps pip from fetching a CUDA build.
# Elsewhere, `make test EXTRAS=dev,plot` skips torch: the torch golden files are still checked, the live
# round-trip test and the torch baselines are skipped.
CONSTRAINTS ?= .ci/constraints.txt
EXTRAS ?= dev,plot,torch,neurogym

.PHONY: demo test lint bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[plot]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@ $(VENV)/.installed-demo

venv: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/schurjax demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check schurjax tests benchmarks
	$(BIN)/ruff format --check schurjax tests benchmarks

test: $(VENV)/.installed-dev lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/schur_order.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
