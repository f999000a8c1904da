# Every target uses the virtual environment in .venv; `make install` creates it.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
CONFIG ?= config/lightspeed.yaml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install install-service uninstall run run-server run-data-collector run-ingest test lint format typecheck imports check bench clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's|$$(PREFIX)|$(PREFIX)|g' \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv with the project and its dev tools

PREFIX ?= /opt/lightspeed
install-service: ## Install the daemons as systemd services (root): venv in $(PREFIX)/venv, units, users, config
	packaging/install.sh --prefix $(PREFIX)

uninstall: ## Remove the systemd services and $(PREFIX)/venv; config and data stay (packaging/uninstall.sh --purge removes them)
	packaging/uninstall.sh --prefix $(PREFIX)

run: install ## Run the whole pipeline locally: server, collector, lightspeed-ingest (Ctrl-C stops)
	$(PY) dev/run.py --config $(CONFIG)

run-server: install ## Run only the API server
	$(VENV)/bin/lightspeed serve --config $(CONFIG)

run-data-collector: install ## Run only the data collector
	$(VENV)/bin/lightspeed-collector --config $(CONFIG)

run-ingest: install ## Run only lightspeed-ingest (uploads, model registry, /admin)
	$(VENV)/bin/lightspeed-ingest serve --config $(CONFIG)

test: install ## Run the test suite (two processes; a file's tests stay together for its shared fixtures)
	@tests/prerequisites.sh
	$(PY) -m pytest -n 2 --dist loadfile

lint: install ## Ruff lint and format check
	$(VENV)/bin/ruff check src tests bench dev
	$(VENV)/bin/ruff format --check src tests bench dev

format: install ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff format src tests bench dev
	$(VENV)/bin/ruff check --fix src tests bench dev

typecheck: install ## mypy in strict mode
	$(VENV)/bin/mypy

imports: install ## The architecture's import contracts (import-linter; see [tool.importlinter] in pyproject.toml)
	$(VENV)/bin/lint-imports

check: lint typecheck imports ## Lint, type-check (ruff + mypy strict) and the import contracts

bench: install ## Run the benchmarks (prints figures beside same-run baselines)
	$(PY) bench/run.py

clean: ## Remove local run data and caches (the tests' container image too)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov .cache
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/lightspeed-tests
