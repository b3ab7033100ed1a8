# dbtorch — `make demo` and `make test` work on a fresh clone; both run setup.
SHELL := /bin/bash
VENV  := .venv
PY    := python3
STAMP := $(VENV)/.installed
GO    ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Fuzzing budgets as execution counts (~5-10 s each here), not durations:
# a duration races Go's fuzz coordinator at its deadline and fails with a
# bare "context deadline exceeded" under load (golang/go#75804, fixed in Go
# 1.27). FUZZTIME, when given, applies to both targets.
FUZZ_LOAD_TIME ?= 40000x
FUZZ_PARSE_TIME ?= 60000x
ifdef FUZZTIME
FUZZ_LOAD_TIME = $(FUZZTIME)
FUZZ_PARSE_TIME = $(FUZZTIME)
endif
export DBTORCH_DBT := $(CURDIR)/$(VENV)/bin/dbt
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: setup demo test test-go fuzz bench lint postgres-deps artifacts-deps golden-selector compat compat-setup compat-bench

## setup: create .venv with the pinned dbt toolchain (idempotent: a second run costs seconds)
setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

## compat-setup: one venv per older supported dbt-core minor under .venv-compat/<minor> (idempotent, like setup)
COMPAT_MINORS := 1.8 1.9 1.10
COMPAT_VENVS  := .venv-compat
compat-setup: $(foreach v,$(COMPAT_MINORS),$(COMPAT_VENVS)/$(v)/.installed)

$(COMPAT_VENVS)/%/.installed: compat/requirements-%.txt
	@test -x $(COMPAT_VENVS)/$*/bin/python || $(PY) -m venv $(COMPAT_VENVS)/$*
	$(COMPAT_VENVS)/$*/bin/pip install -q --disable-pip-version-check -r $<
	@touch $@

## compat: the executor conformance suite (Core, Warm patched and unpatched), the worker's patch gate and the
## selector differential tests, short form, on every supported dbt-core minor (compat-1.8 ... compat-1.11 run one)
COMPAT_RUNS  := $(addprefix compat-,$(COMPAT_MINORS) 1.11)
COMPAT_TESTS := ^(TestWarmPatchedUnpatchedCoreAgree|TestWarmKeepsRelationCache|TestPatchGate|TestIndexSelectionAgrees|TestDifferentialShop|TestDifferentialGenerated|TestZygoteDryRunSendsNothing)$$
COMPAT_PKGS  := ./executor ./internal/pyworker ./selector
# dbt and testdata overlays (compat/testdata/README.md) per minor; 1.11 is the pinned .venv
compat_dbt     = $(if $(filter 1.11,$(1)),$(CURDIR)/$(VENV)/bin/dbt,$(CURDIR)/$(COMPAT_VENVS)/$(1)/bin/dbt)
compat_stamp   = $(if $(filter 1.11,$(1)),$(STAMP),$(COMPAT_VENVS)/$(1)/.installed)
compat_overlay = $(if $(filter 1.8,$(1)),compat/testdata/1.9:compat/testdata/1.8,$(if $(filter 1.9,$(1)),compat/testdata/1.9))
.PHONY: $(COMPAT_RUNS)
compat: $(COMPAT_RUNS)

## compat-bench: the warm executor's per-node overhead on testdata/shop on each supported minor, one after another (BENCHMARKS.md)
compat-bench: compat-setup $(STAMP)
	@set -o pipefail; $(foreach v,$(COMPAT_MINORS) 1.11,echo "== dbt-core $(v)" && \
	  DBTORCH_DBT=$(call compat_dbt,$(v)) DBTORCH_TESTDATA_OVERLAY=$(call compat_overlay,$(v)) \
	  $(GO) test -short -run '^$$' -bench '^BenchmarkPerNodeOverhead$$/^shop$$' -benchtime 1x -count 1 ./executor \
	  | grep -E 'nodes one invocation|warm/build' && ) true

.SECONDEXPANSION:
$(COMPAT_RUNS): compat-%: $$(call compat_stamp,$$*)
	@echo "== make $@: dbt-core $$($(dir $(call compat_dbt,$*))python -c 'from dbt.version import __version__ as v; print(v)')"
	DBTORCH_DBT=$(call compat_dbt,$*) DBTORCH_TESTDATA_OVERLAY=$(call compat_overlay,$*) \
	  $(GO) test -short -count=1 -timeout 20m -run '$(COMPAT_TESTS)' $(COMPAT_PKGS)

## postgres-deps: Debian's PostgreSQL server and PgBouncer for the concurrency tests (skipped when present)
postgres-deps:
	@{ ls /usr/lib/postgresql/*/bin/initdb && test -x /usr/sbin/pgbouncer; } >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql pgbouncer >/dev/null) \
	  || echo "warning: could not install postgresql and pgbouncer; PostgreSQL tests will fail"; }

## artifacts-deps: validators for the artifacts tests (npm mermaid + jsdom, Debian's xmllint), installed when missing
artifacts-deps:
	@test -f testdata/artifacts/mermaid/node_modules/mermaid/package.json || npm ci --prefix testdata/artifacts/mermaid --no-audit --no-fund --loglevel=error
	@command -v xmllint >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml2-utils >/dev/null; }

## demo: parse the bundled DuckDB project with real dbt and build it, orchestrated node by node
demo: setup
	$(GO) run ./examples/dbtorch demo

## test: everything, with real dbt (and PostgreSQL), race detector on, bounded fuzzing
test: setup postgres-deps artifacts-deps
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

## golden-selector: re-record testdata/selector/shop_run_results.json from a real dbt build
golden-selector: setup
	$(GO) test -run '^TestRecordRunResults$$' -count=1 ./selector -update

## fuzz: run each fuzz target for its budget (FUZZ_LOAD_TIME, FUZZ_PARSE_TIME; FUZZTIME sets both)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZ_LOAD_TIME) ./manifest
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_PARSE_TIME) ./selector

## bench: the figures BENCHMARKS.md records (DBTORCH_BENCH_CORE=1 adds the slow Core-executor runs, DBTORCH_BENCH_FULL=1 per-wave on the 1,000-model projects, DBTORCH_BENCH_FORKED=1 per-node with 4 forked workers on PostgreSQL)
bench: setup postgres-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 180m ./...

## lint: gofmt, go vet, staticcheck (pinned)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
