# pulltag: `make test` runs everything CI runs; `make demo` tells the story on this machine.
# On a fresh Debian machine as root both install what they need (apt packages, then a virtualenv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := redis-server docker-registry prometheus
STAMP := $(VENV)/.installed

.PHONY: test demo soak explore lint types layering unit system-deps venv bench clean

test: system-deps $(STAMP) lint types layering
	$(BIN)/python -m tests.run_pytest tests

demo: system-deps $(STAMP)
	$(BIN)/pulltag demo

soak: system-deps $(STAMP)
	PULLTAG_SOAK=1 $(BIN)/python -m tests.run_pytest tests/chaos

# The property tests with fresh random examples (make test draws a fixed set per commit).
explore: system-deps $(STAMP)
	PULLTAG_HYPOTHESIS=explore $(BIN)/python -m tests.run_pytest tests -m hypothesis

bench: system-deps $(STAMP)
	$(BIN)/python bench/report.py

# Installs the servers the tests run for real, only when missing (root on Debian; otherwise it says what to run).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

layering: $(STAMP)
	$(BIN)/python -m tests.layering

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
