# `make run` and `make test` set themselves up: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= $(or $(XENT_HOST),127.0.0.1)
PORT ?= $(or $(XENT_PORT),8000)

.PHONY: run test lint openapi openapi-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[maps]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(PY) -m service serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy service

openapi: $(VENV)/.runtime
	$(PY) -m service openapi --output openapi/openapi.json

openapi-check: $(VENV)/.runtime
	$(PY) -m service openapi | diff -u openapi/openapi.json - \
		|| (echo "openapi/openapi.json is stale: run make openapi" >&2; exit 1)

bench: $(VENV)/.dev
	$(PY) -m benchmarks.core

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
