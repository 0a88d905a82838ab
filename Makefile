# The README's two set-up commands are `make demo` and `make test`.
# Every target creates .venv and installs what it needs; re-running is cheap (a stamp file
# records the last install and is redone only when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
CLISTAMP := $(VENV)/.installed-cli

.PHONY: demo test lint bench services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CLISTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(CLISTAMP)

demo: $(CLISTAMP)
	$(BIN)/stalwart demo

services:
	bash scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report --format=total | sed "s/^/coverage: /; s/$$/%/"

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
