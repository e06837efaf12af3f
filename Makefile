# The targets the README and CI use. `demo` and `test` set up everything they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system demo release local-run test check lint bench lab-up lab-down clean constraints

setup: system $(STAMP)

system:
	@bash lab/system-packages.sh

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c 'import locust, pyodbc, chaoslib, chaosk8s, matplotlib, prometheus_client, hdrh' \
		|| { echo "setup: the venv is incomplete: delete .venv and run make setup again" >&2; exit 2; }
	@touch $(STAMP)

## demo: the main job on the embedded lab (the release command with the lab's var file); prints the report path
demo: setup
	bash experiments/run-all.sh

## release: the whole checklist against a cluster: make release VARS=cluster.vars.json [RELEASE_ARGS=...]
## the command exits 0 GO, 1 NO-GO, 2 could not run, 130 interrupted (make itself: 0 on GO, else 2)
release: setup
	@test -n "$(VARS)" || { echo "make release: pass VARS=your-cluster.vars.json (see experiments/vars/cluster.vars.example.json)" >&2; exit 2; }
	$(BIN)/python -m orchestration release --var-file "$(VARS)" $(RELEASE_ARGS)

## local-run: load + freeze + kill on plain local PostgreSQL servers, no Kubernetes
local-run: setup
	$(BIN)/python -m probes local-run

## check: ruff, format, mypy, import layers, the CI pipeline templates (schema and yamllint) and the
## Dockerfile (hadolint, from the dev extra; .hadolint.yaml); changes nothing
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check common lab loadgen orchestration probes reports tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/check-jsonschema -q --builtin-schema vendor.github-workflows deploy/ci/github-release-e2e.yml
	$(BIN)/check-jsonschema -q --builtin-schema vendor.gitlab-ci deploy/ci/gitlab-release-e2e.yml
	$(BIN)/yamllint -s -c deploy/ci/yamllint.yml deploy/ci
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile

## lint: fix what can be fixed automatically
lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format common lab loadgen orchestration probes reports tests

## test: check, then what may run in parallel (unit tests, light integration tests: tests/conftest.py) on three workers, then the rest one at a time (labs, load, and tests that time what they measure)
test: check
	$(BIN)/pytest -n 3 -m parallel $(PYTEST_ARGS)
	$(BIN)/pytest -m "not parallel" $(PYTEST_ARGS)

## bench: harness vs pgbench (and a bare pyodbc client), tenants per load core, the lab's control plane, backup/restore vs the RTO objective, the load master's journal intake, the journal at soak scale
bench: setup
	$(BIN)/python -m tests.benchmarks.bench_throughput --bare
	$(BIN)/python -m tests.benchmarks.bench_tenants
	$(BIN)/python -m tests.benchmarks.bench_lab
	$(BIN)/python -m tests.benchmarks.bench_backup
	$(BIN)/python -m tests.benchmarks.bench_rto_bias --freezes 9 --spread 1
	$(BIN)/python -m tests.benchmarks.bench_collect
	$(BIN)/python -m tests.benchmarks.bench_journal_write
	$(BIN)/python -m tests.benchmarks.bench_soak_journal

## lab-up / lab-down: the embedded Kubernetes-compatible lab (kubeconfig in .lab/kubeconfig)
lab-up: setup
	$(BIN)/python -m lab up --tenants $(or $(TENANTS),3) --nodes $(or $(NODES),3)

lab-down: setup
	$(BIN)/python -m lab down

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache

## constraints: re-pin every dependency from the current venv
constraints: setup
	( echo '# Exact versions the Makefile installs with (pip -c constraints.txt); regenerate with `make constraints`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt
