package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/blobstore"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// runBuild is `dbtorch build`: it builds a dbt project node by node.
func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, code, ok := parseBuildFlags(args, stderr)
	if !ok {
		return code
	}
	return build(ctx, "build", f, nil, stdout, stderr)
}

// build runs one build as the flags describe it, or, with prior, the
// retry of that earlier run. It shows how the library fits together:
// describe the project (dbt.Project), start an executor, configure an
// orchestrator (cache, reporters, observers, limits), run, report.
func build(ctx context.Context, cmd string, f *buildFlags, prior *orchestrator.PriorRun, stdout, stderr io.Writer) int {
	mode, err := orchestrator.ParseMode(f.mode)
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	strategy, err := manifest.ParseTestStrategy(f.strategy)
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	selection, err := f.sel.options()
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	logger, extraObs, flushObs, err := f.observe.setup(ctx, stderr, os.Getenv)
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	defer flushObs()
	proj, err := f.project()
	if err == nil {
		err = f.preflight(proj)
	}
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	reporters, closeReporters, err := f.reporters(logger, stderr)
	if err != nil {
		return badInput(stderr, cmd, err)
	}
	defer closeReporters()

	ex, m, closeEx, err := newBuildExecutor(ctx, f, proj, logger)
	if err != nil {
		return failure(ctx, stderr, cmd, err)
	}
	defer closeEx()

	cfg := orchestrator.Config{
		Executor: ex, Manifest: m, Mode: mode, Concurrency: f.concurrency, StrictWaves: f.strict,
		Retry:       orchestrator.RetryConfig{Retries: f.retries, Delay: f.retryDelay, Jitter: 0.2},
		NodeTimeout: f.timeout, Logger: logger, Reporters: reporters,
		Estimate: priorDurations(f.results),
	}
	if f.cacheDir != "" {
		if cfg.Cache, err = openCache(ctx, f, proj, m, logger); err != nil {
			return failure(ctx, stderr, cmd, err)
		}
	}
	var prog *progress
	if !f.quiet {
		prog = newProgress(stdout, isTerminal(stdout), cfg.Concurrency, cfg.Estimate)
		defer prog.stop()
		cfg.Observer = prog
	}
	withObserver(&cfg, extraObs)
	// --fail-fast: the first failed node cancels the rest of the build.
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if f.failFast {
		withObserver(&cfg, failFast(cancel))
	}
	closeLimits, err := f.limits.apply(ctx, &cfg, m, logger)
	if err != nil {
		return limitExit(stderr, err)
	}
	defer closeLimits()
	o, err := orchestrator.New(cfg)
	if err != nil {
		return failure(ctx, stderr, cmd, err)
	}
	// The library caps concurrency by what the executor takes at once (one
	// on a DuckDB file); say so before the build starts.
	if n, reason := o.Concurrency(); reason != "" {
		f.observe.notice(stderr, logger, cmd, fmt.Sprintf("running %d node(s) at a time, not %d: %s", n, cfg.Concurrency, reason))
		prog.setConcurrency(n)
	}

	opts := orchestrator.BuildOptions{
		Selection: selection, Tests: strategy, FullRefresh: f.fullRefresh, OnlyFreshSources: f.onlyFresh,
		EventTimeStart: f.eventStart, EventTimeEnd: f.eventEnd,
		Vars: proj.Vars, // recorded in the results' args (the executor already passes them)
	}
	var run *orchestrator.Run
	if prior != nil {
		run, err = o.Retry(bctx, prior, opts)
	} else {
		run, err = o.RunBuild(bctx, opts)
	}
	if run == nil {
		return noRun(ctx, stdout, stderr, cmd, err)
	}
	if prog != nil {
		prog.stop()
	}
	if f.results != "" {
		if werr := writeResults(f.results, run); werr != nil {
			fmt.Fprintf(stderr, "dbtorch %s: --results: %v\n", cmd, werr)
			return exitFailed
		}
	}
	printSummary(stdout, run)
	return buildExit(ctx, bctx, stderr, cmd, run, err)
}

// reporters returns the reporters the flags ask for, and a function that
// closes them once the build is reported.
func (f *buildFlags) reporters(logger *slog.Logger, stderr io.Writer) ([]orchestrator.Reporter, func(), error) {
	var rs []orchestrator.Reporter
	if f.runResults != "" {
		rs = append(rs, &artifacts.RunResults{Path: f.runResults, Overwrite: f.replaceRunResults})
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
	opts := f.executorOptions(proj)
	opts.Logger = logger
	switch f.execName {
	case "core":
		c, err := executor.NewCore(executor.CoreConfig{Options: opts})
		if err != nil {
			return nil, nil, nil, err
		}
		ex = c
	case "warm":
		// Per node, one worker runs --concurrency nodes at once in its
		// build session, DuckDB included (one process; without sessions:
		// --concurrency workers, and on DuckDB one, running one node at a
		// time: the executor says so); per wave, one worker runs each
		// wave's nodes, --threads at once (0: the executor's default),
		// in its build session, or as one dbt build where none runs.
		workers, threads := f.workers, f.concurrency
		if f.mode == "per-wave" {
			threads = f.threads
		}
		if workers == 0 && f.mode == "per-wave" {
			workers = 1
		}
		w, err := executor.NewWarm(executor.WarmConfig{Options: opts, Workers: workers, SessionThreads: threads, RecycleAfter: f.recycleAfter})
		if err != nil {
			return nil, nil, nil, err
		}
		ex = w
	default: // checked by parseBuildFlags
		return nil, nil, nil, usageError{fmt.Errorf("unknown --executor %q (want warm or core)", f.execName)}
	}
	m, err := ex.Manifest(ctx)
	if err != nil {
		ex.Close()
		return nil, nil, nil, err
	}
	return ex, m, func() { ex.Close() }, nil
}

// openCache opens the cache directory, or the object store a URL names
// (s3://bucket/prefix?endpoint=..., gs://, azblob://, file://), for this
// build (a source freshness snapshot is taken per build when
// --only-fresh-sources asks for one). The bucket stays open until the
// process exits.
func openCache(ctx context.Context, f *buildFlags, proj dbt.Project, _ *manifest.Manifest, logger *slog.Logger) (orchestrator.Cache, error) {
	store, err := openStore(ctx, f.cacheDir, logger)
	if err != nil {
		return nil, err
	}
	return orchcache.New(store, orchcache.Options{Project: proj, TTL: f.cacheTTL, AlwaysRunTests: f.alwaysRunTests,
		Freshness: f.onlyFresh, Logger: logger}), nil
}

// openStore opens the cache directory, or the object store a URL names.
// The bucket stays open until the process exits.
func openStore(ctx context.Context, dirOrURL string, logger *slog.Logger) (*cache.Store, error) {
	if blobstore.IsURL(dirOrURL) {
		store, _, err := blobstore.Open(ctx, dirOrURL, cache.StoreOptions{Logger: logger})
		return store, err
	}
	return cache.NewStore(afero.NewOsFs(), dirOrURL, cache.StoreOptions{Logger: logger}), nil
}
