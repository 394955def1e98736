# The README's two commands: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration bench install broker-jars schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "need Java >= 17 and Maven for the local Kafka broker: apt-get install -y openjdk-17-jre-headless maven" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

broker-jars:
	deploy/local/kafka.sh fetch

demo: install
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
	$(BIN)/moderator schemas --out docs/schemas

clean:
	rm -rf $(VENV) .cache .pytest_cache
