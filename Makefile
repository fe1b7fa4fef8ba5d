# Two commands set everything up on a fresh machine:
#   make demo   — the quickstart pipeline, end to end, on the local target
#   make test   — the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint validators clean bench

# `make demo` installs only what the quickstart runs (the serve and ml extras);
# the test tools and validators (the dev extra: ~18,000 more files) come with `make test`.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[serve,ml]'
	touch $@

$(STAMP): $(DEMO_STAMP) pyproject.toml examples/plugins/mlprism-make/pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,serve,ml]' -e examples/plugins/mlprism-make
	touch $@

# Validators the tests run on generated files (npm ones live in build/node_modules).
validators: $(STAMP)
	bash .ci/install-validators.sh

demo: $(DEMO_STAMP)
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
