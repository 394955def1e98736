# The README's two commands: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dev: test tools, Ray, the Triton client, video; export: torch, open_clip, transformers (~6 GB),
# for the export parity tests only. `make test EXTRAS=dev` skips those and their 6 GB.
EXTRAS ?= dev,export

.PHONY: demo test test-unit test-integration bench install system-deps broker-jars schemas lint clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

system-deps:
	deploy/local/system-deps.sh

broker-jars: system-deps
	deploy/local/kafka.sh fetch

demo: install broker-jars
	$(BIN)/moderator demo

test: install broker-jars
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: install broker-jars
	$(BIN)/pytest tests/integration

bench: install
	$(BIN)/moderator bench

# ruff (lint and format) and mypy, as .ci/run runs them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

schemas: install
	$(BIN)/moderator schemas --out docs

clean:
	rm -rf $(VENV) .cache .pytest_cache
