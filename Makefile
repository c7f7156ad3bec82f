# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The scaled-mode pass of the tests talks to these real services.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/13
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/localai

# Every install takes the exact versions in constraints.txt, the ones CI ran.
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints.txt
# How llama-cpp-python compiles llama.cpp (it builds from source on install). Native: for the
# CPU of the machine that builds it, which is the one that runs it. For an NVIDIA GPU:
#   make install CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_CUDA=ON"   (then `make llama-rebuild`
# if it was built before: pip reuses a cached wheel whatever the flags).
CMAKE_ARGS ?= -DGGML_NATIVE=ON
export CMAKE_ARGS
# GCC 12 miscompiles llama.cpp's AMX kernels (they crash on any CPU with AMX); the header fixes
# the intrinsics it gets wrong and changes nothing elsewhere.
export CXXFLAGS := -include $(CURDIR)/scripts/gcc_amx_tile_fix.h $(CXXFLAGS)

.PHONY: run install install-test test test-embedded test-scaled lint bench clean llama-rebuild

run: install
	$(BIN)/localai serve --host $(HOST) --port $(PORT)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	@echo "Installing LocalAI (llama-cpp-python compiles once, about 5 minutes; pip caches it)…"
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

# Compile llama-cpp-python again with the current CMAKE_ARGS, past pip's wheel cache.
llama-rebuild: | $(BIN)/python
	$(PIP_INSTALL) --force-reinstall --no-cache-dir --no-deps llama-cpp-python

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

# Style, the layers between the apps (pyproject.toml [tool.importlinter]) and the types of the
# core and the services ([tool.mypy]). CI runs it before the tests.
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	LOCALAI_DATA_DIR=.test-data $(BIN)/mypy

bench: install-test
	$(BIN)/python bench/stream_overhead.py

clean:
	rm -rf .test-data test-artifacts .pytest_cache
