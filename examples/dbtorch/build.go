package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/atomicfile"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// buildFlags are the options of `dbtorch build`.
type buildFlags struct {
	projectDir, profilesDir, target string
	sel, excl                       multiFlag
	selector, indirect              string
	mode, strategy, execName        string
	concurrency, retries, workers   int
	retryDelay, timeout             time.Duration
	cacheDir                        string
	cacheTTL                        time.Duration
	alwaysRunTests                  bool
	onlyFresh, fullRefresh, strict  bool
	vars                            string
	results, runResults, summary    string
	junit, lineage, lineageDatasets string
	quiet                           bool
	observe                         *observeFlags
	limits                          *limitFlags
}

// parseBuildFlags parses build's arguments; the error is bad input.
func parseBuildFlags(args []string, stderr io.Writer) (*buildFlags, error) {
	f := &buildFlags{}
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.projectDir, "project-dir", "", "dbt project directory (required)")
	fs.StringVar(&f.profilesDir, "profiles-dir", "", "dbt profiles directory (default: dbt's)")
	fs.StringVar(&f.target, "target", "", "dbt target")
	fs.Var(&f.sel, "select", "dbt node selection (repeatable)")
	fs.Var(&f.excl, "exclude", "dbt node exclusion (repeatable)")
	fs.StringVar(&f.selector, "selector", "", "YAML selector name")
	fs.StringVar(&f.indirect, "indirect-selection", "", "eager (default), cautious, buildable or empty")
	fs.StringVar(&f.mode, "mode", "per-node", "per-node or per-wave")
	fs.IntVar(&f.concurrency, "concurrency", 4, "nodes running at once (per-node mode)")
	fs.IntVar(&f.retries, "retries", 0, "retries of a failed node (transient errors only)")
	fs.DurationVar(&f.retryDelay, "retry-delay", time.Second, "delay before the first retry (doubles each retry)")
	fs.DurationVar(&f.timeout, "node-timeout", 0, "timeout of each dbt invocation (0: none)")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "cache directory (empty: no cache)")
	fs.DurationVar(&f.cacheTTL, "cache-ttl", 0, "cache entry lifetime, applied at lookup (0: no expiry)")
	fs.BoolVar(&f.alwaysRunTests, "always-run-tests", false, "run every test even when what it tests was served from the cache")
	fs.BoolVar(&f.onlyFresh, "only-fresh-sources", false, "skip nodes reading stale sources (needs --cache-dir)")
	fs.StringVar(&f.strategy, "test-strategy", "immediate", "immediate, deferred or skip")
	fs.BoolVar(&f.fullRefresh, "full-refresh", false, "pass --full-refresh to dbt and bypass cache reads")
	fs.BoolVar(&f.strict, "strict-waves", false, "per-node mode: start a wave only after the previous one finished")
	fs.StringVar(&f.vars, "vars", "", "dbt vars, as dbt takes them: a YAML mapping such as {broken_model: true} (JSON is YAML)")
	fs.StringVar(&f.execName, "executor", "warm", "warm (long-lived dbt workers) or core (one dbt process per invocation)")
	fs.IntVar(&f.workers, "workers", 0, "warm workers (0: 1 on DuckDB, else --concurrency)")
	fs.StringVar(&f.results, "results", "", "write dbtorch's results JSON here")
	fs.StringVar(&f.runResults, "run-results", "", "write a dbt run_results.json here")
	fs.StringVar(&f.summary, "summary", "", "write a markdown summary here")
	fs.StringVar(&f.junit, "junit", "", "write JUnit XML here")
	fs.StringVar(&f.lineage, "lineage", "", "emit OpenLineage events: a file (JSON lines) or an http(s) endpoint URL (OPENLINEAGE_API_KEY, OPENLINEAGE_NAMESPACE honoured)")
	fs.StringVar(&f.lineageDatasets, "lineage-dataset-namespace", "", "OpenLineage namespace of every dataset, naming the warehouse as other producers do (e.g. postgres://db.example.com:5432); default: the adapter type and \"://\"")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	f.observe = addObserveFlags(fs)
	f.limits = addLimitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case f.projectDir == "":
		return nil, errors.New("--project-dir is required")
	case f.concurrency < 1 || f.retries < 0 || f.workers < 0:
		return nil, errors.New("--concurrency must be positive, --retries and --workers not negative")
	case f.onlyFresh && f.cacheDir == "":
		return nil, errors.New("--only-fresh-sources needs --cache-dir")
	}
	return f, nil
}

// project describes the dbt project once, from the flags and the
// environment; everything below (executor, cache, freshness) runs on it.
// Directories are made absolute: dbt runs with its working directory
// elsewhere (warm workers, temp dirs).
func (f *buildFlags) project() (dbt.Project, error) {
	vars, err := dbt.ParseVars(f.vars)
	if err != nil {
		return dbt.Project{}, err
	}
	p := dbt.Project{Target: f.target, Vars: vars}
	if p.Dir, err = filepath.Abs(f.projectDir); err != nil {
		return dbt.Project{}, err
	}
	if f.profilesDir != "" {
		if p.ProfilesDir, err = filepath.Abs(f.profilesDir); err != nil {
			return dbt.Project{}, err
		}
	}
	return p, nil
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseBuildFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return badInput(stderr, "build", err)
	}
	mode, err := orchestrator.ParseMode(f.mode)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	strategy, err := manifest.ParseTestStrategy(f.strategy)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	proj, err := f.project()
	if err != nil {
		return badInput(stderr, "build", err)
	}
	logger, extraObs, flushObs, err := f.observe.setup(ctx, stderr, os.Getenv)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	defer flushObs()

	ex, m, closeEx, err := newBuildExecutor(ctx, f, proj, logger)
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
		return 1
	}
	defer closeEx()

	cfg := orchestrator.Config{
		Executor: ex, Manifest: m, Mode: mode, Concurrency: f.concurrency, StrictWaves: f.strict,
		Retry:       orchestrator.RetryConfig{Retries: f.retries, Delay: f.retryDelay, Jitter: 0.2},
		NodeTimeout: f.timeout, Logger: logger,
	}
	if m.Metadata.AdapterType == "duckdb" && mode == orchestrator.PerNode && cfg.Concurrency > 1 {
		// One DuckDB file takes one writing process at a time.
		cfg.Concurrency = 1
	}
	if f.cacheDir != "" {
		if cfg.Cache, err = openCache(ctx, f, proj, m, logger); err != nil {
			fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
			return 1
		}
	}
	reporters, closeReporters, err := f.reporters(logger, stderr)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	defer closeReporters()
	cfg.Reporters = reporters
	var prog *progress
	if !f.quiet {
		prog = newProgress(stdout, isTerminal(stdout))
		cfg.Observer = prog
	}
	withObserver(&cfg, extraObs)
	closeLimits, err := f.limits.apply(ctx, &cfg, m, logger)
	if err != nil {
		return limitExit(stderr, err)
	}
	defer closeLimits()
	o, err := orchestrator.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
		return 1
	}
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{
		Selection: selector.Options{Select: f.sel, Exclude: f.excl, Selector: f.selector, Indirect: selector.IndirectMode(f.indirect)},
		Tests:     strategy, FullRefresh: f.fullRefresh, OnlyFreshSources: f.onlyFresh,
		Vars: proj.Vars, // recorded in the results' args (the executor already passes them)
	})
	if run == nil {
		return badInput(stderr, "build", err)
	}
	if prog != nil {
		prog.stop()
	}
	if f.results != "" {
		if werr := writeResults(f.results, run); werr != nil {
			fmt.Fprintf(stderr, "dbtorch build: --results: %v\n", werr)
			return 1
		}
	}
	printSummary(stdout, run)
	var be *orchestrator.BuildError
	switch {
	case errors.As(err, &be):
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
		return 1
	}
	return 0
}

// reporters returns the reporters the flags ask for, and a function that
// closes them once the build is reported.
func (f *buildFlags) reporters(logger *slog.Logger, stderr io.Writer) ([]orchestrator.Reporter, func(), error) {
	var rs []orchestrator.Reporter
	if f.runResults != "" {
		rs = append(rs, &artifacts.RunResults{Path: f.runResults})
	}
	if f.summary != "" {
		rs = append(rs, &artifacts.Summary{Path: f.summary})
	}
	if f.junit != "" {
		rs = append(rs, &artifacts.JUnit{Path: f.junit})
	}
	if f.lineage == "" {
		return rs, func() {}, nil
	}
	tr, err := artifacts.OpenTransport(f.lineage, artifacts.HTTPOptions{APIKey: os.Getenv("OPENLINEAGE_API_KEY"), Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("--lineage: %w", err)
	}
	rs = append(rs, &artifacts.Lineage{Transport: tr, JobNamespace: os.Getenv("OPENLINEAGE_NAMESPACE"), DatasetNamespace: f.lineageDatasets})
	return rs, func() {
		// Deliver what is queued, but never hang on an unreachable endpoint.
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tr.Close(cctx); err != nil {
			fmt.Fprintf(stderr, "dbtorch build: --lineage: %v\n", err)
		}
	}, nil
}

// newBuildExecutor returns the executor, the project's manifest (parsed
// by the executor) and a function that closes the executor.
func newBuildExecutor(ctx context.Context, f *buildFlags, proj dbt.Project, logger *slog.Logger) (executor.Executor, *manifest.Manifest, func(), error) {
	type provider interface {
		executor.Executor
		executor.ManifestProvider
		io.Closer
	}
	var ex provider
	switch f.execName {
	case "core":
		c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: proj, Logger: logger}})
		if err != nil {
			return nil, nil, nil, err
		}
		ex = c
	case "warm":
		workers := f.workers
		if workers == 0 {
			// One DuckDB file takes one writing process at a time.
			workers = 1
			if pr, err := proj.Profile(); f.mode != "per-wave" && (err != nil || pr.Adapter != "duckdb") {
				workers = f.concurrency
			}
		}
		w, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: proj, Logger: logger}, Workers: workers})
		if err != nil {
			return nil, nil, nil, err
		}
		ex = w
	default:
		return nil, nil, nil, usageError{fmt.Errorf("unknown --executor %q (want warm or core)", f.execName)}
	}
	m, err := ex.Manifest(ctx)
	if err != nil {
		ex.Close()
		return nil, nil, nil, err
	}
	return ex, m, func() { ex.Close() }, nil
}

// openCache opens the cache directory for this build (a source freshness
// snapshot is taken per build when --only-fresh-sources asks for one).
func openCache(_ context.Context, f *buildFlags, proj dbt.Project, _ *manifest.Manifest, logger *slog.Logger) (orchestrator.Cache, error) {
	store := cache.NewStore(afero.NewOsFs(), f.cacheDir, cache.StoreOptions{Logger: logger})
	return orchcache.New(store, orchcache.Options{Project: proj, TTL: f.cacheTTL, AlwaysRunTests: f.alwaysRunTests,
		Freshness: f.onlyFresh, Logger: logger}), nil
}

// writeResults writes the results contract to path atomically.
func writeResults(path string, run *orchestrator.Run) error {
	var buf bytes.Buffer
	if err := run.WriteJSON(&buf); err != nil {
		return err
	}
	return atomicfile.Write(nil, path, buf.Bytes(), 0o644)
}
