# The two commands of the quick start live here. Each installs what it needs
# into .venv (created with the machine's python3) before it runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SCAN_VENV ?= .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

.PHONY: demo test lint typecheck suite unit integration e2e install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	touch $(SCAN_STAMP)

install: $(STAMP) $(SCAN_STAMP)

## demo: the whole flow on this machine (in-process AWS emulator, SQLite); nothing else to install
demo: $(STAMP)
	$(BIN)/replication demo

## test: lint, type-check and run the whole test suite (needs PostgreSQL and MariaDB)
test: lint typecheck suite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

## suite: the whole test suite; unit, integration and e2e run one group of it
suite: $(STAMP) $(SCAN_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

unit integration e2e: $(STAMP) $(SCAN_STAMP)
	$(BIN)/pytest tests/$@ $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(SCAN_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
