# Two commands set everything up on a fresh machine:
#   make demo   — the quickstart pipeline, end to end, on the local target
#   make test   — the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint validators clean bench

$(STAMP): pyproject.toml examples/plugins/mlprism-make/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,serve,ml]' -e examples/plugins/mlprism-make
	touch $@

# Validators the tests run on generated files (npm ones live in build/node_modules).
validators: $(STAMP)
	bash .ci/install-validators.sh

demo: $(STAMP)
	$(BIN)/python examples/quickstart/demo.py

test: $(STAMP) validators
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build .pytest_cache
