# The README's two commands: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration bench install system-deps broker-jars schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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

schemas: install
	$(BIN)/moderator schemas --out docs

clean:
	rm -rf $(VENV) .cache .pytest_cache
