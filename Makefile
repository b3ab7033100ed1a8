# dbtorch — `make demo` and `make test` work on a fresh clone; both run setup.
SHELL := /bin/bash
VENV  := .venv
PY    := python3
STAMP := $(VENV)/.installed
GO    ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 10s
export DBTORCH_DBT := $(CURDIR)/$(VENV)/bin/dbt
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: setup demo test test-go fuzz bench lint postgres-deps artifacts-deps golden-selector

## setup: create .venv with the pinned dbt toolchain (idempotent: a second run costs seconds)
setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

## postgres-deps: Debian's PostgreSQL server for the concurrency tests (skipped when present)
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	  || echo "warning: could not install postgresql; PostgreSQL tests will fail"; }

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

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./manifest
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./selector

## bench: the figures BENCHMARKS.md records
bench: setup postgres-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./...

## lint: gofmt, go vet, staticcheck (pinned)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
