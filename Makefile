# Stockyard: every target a newcomer or CI needs. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lake's own environment: DuckDB 1.5.5, the one its ducklake and postgres extension wheels exist for
LAKE_VENV := .venv-lake
LAKE_BIN := $(LAKE_VENV)/bin
LAKE_STAMP := $(LAKE_VENV)/.installed
# moto's S3 server for the tests of a lake on S3: its botocore cannot share an environment with rq
S3_VENV := .venv-s3
S3_STAMP := $(S3_VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install install-lake run run-lake test lint typecheck check bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## build .venv from the lock file (reproducible)

$(LAKE_STAMP): requirements-lake.lock pyproject.toml
	test -x $(LAKE_BIN)/python || $(PYTHON) -m venv $(LAKE_VENV)
	$(LAKE_BIN)/python -m pip install --quiet --upgrade pip
	$(LAKE_BIN)/python -m pip install --quiet --require-hashes -r requirements-lake.lock
	$(LAKE_BIN)/python -m pip install --quiet --no-deps -e .
	touch $(LAKE_STAMP)

$(S3_STAMP): requirements-s3.lock
	test -x $(S3_VENV)/bin/python || $(PYTHON) -m venv $(S3_VENV)
	$(S3_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-s3.lock
	touch $(S3_STAMP)

install-lake: $(LAKE_STAMP) $(S3_STAMP) ## build .venv-lake (DuckDB 1.5.5 with DuckLake) and .venv-s3 (a local S3 for its tests)

run: install ## run the API, two workers and an embedded Redis on http://127.0.0.1:8000
	$(BIN)/stockyard serve

run-lake: install-lake ## the same, with the warehouse in a DuckLake on an embedded PostgreSQL
	STOCKYARD_WAREHOUSE=ducklake $(LAKE_BIN)/stockyard serve

test: install install-lake ## run lint, type checks and the whole test suite (the lake's tests in .venv-lake)
	$(BIN)/ruff check contracts transforms service tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not lake"
	$(LAKE_BIN)/pytest -q -m lake tests/service

lint: install ## ruff only
	$(BIN)/ruff check contracts transforms service tests benchmarks

typecheck: install ## mypy only
	$(BIN)/mypy

bench: install install-lake ## run the benchmark suite, then the lake's against the file (see benchmarks/README.md)
	$(BIN)/python -m benchmarks
	$(LAKE_BIN)/python -m benchmarks.lake

lock: ## re-resolve requirements.lock from pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --generate-hashes --python-version 3.11 -o requirements.lock
	# the lake's lock: the same versions as the main one, but for DuckDB and what only the lake needs
	grep -E '^[a-z0-9_.-]+==' requirements.lock | sed 's/ .*//' | grep -v '^duckdb==' > $(VENV)/lake-constraints.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra lake --generate-hashes --python-version 3.11 \
		--no-header -c $(VENV)/lake-constraints.txt -o requirements-lake.lock
	$(BIN)/uv pip compile requirements-s3.in --generate-hashes --python-version 3.11 --no-header -o requirements-s3.lock

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) $(LAKE_VENV) $(S3_VENV) data
