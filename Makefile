# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The scaled-mode pass of the tests talks to these real services.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/13
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/localai

.PHONY: run install install-test test test-embedded test-scaled lint bench clean

run: install
	$(BIN)/localai serve --host $(HOST) --port $(PORT)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing LocalAI (llama-cpp-python compiles once, about 5 minutes; pip caches it)…"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	bash scripts/test-prerequisites.sh

# Embedded mode (SQLite, in-memory layer, in-process tasks) with the browser tests, then
# scaled mode (Redis, PostgreSQL, real worker processes) with the PostgreSQL-marked tests.
test: install-test
	$(MAKE) --no-print-directory test-embedded test-scaled

test-embedded:
	$(BIN)/python -m pytest -m "not scaled" $(PYTEST_ARGS)

test-scaled:
	REDIS_URL=$(TEST_REDIS_URL) DATABASE_URL=$(TEST_DATABASE_URL) \
		$(BIN)/python -m pytest -m "scaled or postgres" $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .

bench: install-test
	$(BIN)/python bench/stream_overhead.py

clean:
	rm -rf .test-data test-artifacts .pytest_cache
