# Stockyard: every target a newcomer or CI needs. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck check bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## build .venv from the lock file (reproducible)

run: install ## run the API, two workers and an embedded Redis on http://127.0.0.1:8000
	$(BIN)/stockyard serve

test: install ## run lint, type checks and the whole test suite
	$(BIN)/ruff check contracts transforms service tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: install ## ruff only
	$(BIN)/ruff check contracts transforms service tests benchmarks

typecheck: install ## mypy only
	$(BIN)/mypy

bench: install ## run the benchmark suite (see benchmarks/README.md)
	$(BIN)/python -m benchmarks

lock: ## re-resolve requirements.lock from pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --generate-hashes --python-version 3.11 -o requirements.lock

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) data
