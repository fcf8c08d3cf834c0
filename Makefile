# `make run` and `make test` each do all set-up on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test deps venv lint check bench clean

deps:
	@./scripts/install-deps.sh

$(BIN)/rdsbackup: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/rdsbackup

run: deps venv
	$(BIN)/rdsbackup demo --config rdsbackup.toml

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: deps venv lint
	$(BIN)/pytest

bench: deps venv
	$(BIN)/python bench/run.py

clean:
	@link=$$(readlink -f .state/instances 2>/dev/null); \
	case "$$link" in /var/lib/rdsbackup/*/instances) rm -rf "$${link%/instances}";; esac
	rm -rf $(VENV) .state
