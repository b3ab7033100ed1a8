package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
)

// buildFlags are the options of `dbtorch build` (and `dbtorch retry`).
type buildFlags struct {
	projectDir, profilesDir, target string
	sel                             *selectionFlags
	deferFlag, favorState, failFast bool
	deferState                      string
	mode, strategy, execName        string
	concurrency, threads            int
	retries, workers, recycleAfter  int
	retryDelay, timeout, killGrace  time.Duration
	cacheDir                        string
	cacheTTL                        time.Duration
	alwaysRunTests                  bool
	onlyFresh, fullRefresh, strict  bool
	eventTimeStart, eventTimeEnd    string
	eventStart, eventEnd            time.Time // parsed
	vars                            string
	results, runResults, summary    string
	junit, lineage, lineageDatasets string
	quiet                           bool
	observe                         *observeFlags
	limits                          *limitFlags

	set map[string]bool // the flags given on the command line
	// replaceRunResults lets --run-results replace a file dbt wrote (the
	// one a retry read).
	replaceRunResults bool
}

// newBuildFlagSet declares build's flags on a new FlagSet named name.
func newBuildFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *buildFlags) {
	f := &buildFlags{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.addProjectFlags(fs)
	f.sel = addSelectionFlags(fs)
	fs.BoolVar(&f.deferFlag, "defer", false, "dbt --defer: resolve refs to unselected nodes from the --state (or --defer-state) manifest")
	fs.StringVar(&f.deferState, "defer-state", "", "dbt --defer-state: the manifest directory --defer reads (default: --state)")
	fs.BoolVar(&f.favorState, "favor-state", false, "dbt --favor-state: with --defer, prefer the state's relations even when the node exists in the target")
	fs.StringVar(&f.mode, "mode", "per-node", "per-node or per-wave")
	fs.IntVar(&f.concurrency, "concurrency", 4, "nodes running at once (per-node mode)")
	fs.IntVar(&f.threads, "threads", 0, "dbt --threads: how many of a wave's nodes run at once in per-wave mode (default: the profile's threads, or 4 in a warm build session); in per-node mode, the default of --concurrency")
	fs.BoolVar(&f.failFast, "fail-fast", false, "stop the build at the first node that fails (what runs is cancelled, the rest skipped)")
	fs.IntVar(&f.retries, "retries", 0, "retries of a failed node (transient errors only)")
	fs.DurationVar(&f.retryDelay, "retry-delay", time.Second, "delay before the first retry (doubles each retry)")
	fs.DurationVar(&f.timeout, "node-timeout", 0, "timeout of each dbt invocation (0: none)")
	fs.DurationVar(&f.killGrace, "kill-grace", 5*time.Second, "on interrupt, time dbt gets to cancel its queries before it is killed (a second interrupt kills at once)")
	f.addCacheFlags(fs)
	fs.BoolVar(&f.onlyFresh, "only-fresh-sources", false, "skip nodes reading stale sources (needs --cache-dir)")
	fs.StringVar(&f.strategy, "test-strategy", "immediate", "immediate, deferred or skip")
	fs.BoolVar(&f.fullRefresh, "full-refresh", false, "pass --full-refresh to dbt and bypass cache reads")
	fs.StringVar(&f.eventTimeStart, "event-time-start", "", "dbt --event-time-start: microbatch models build batches from this time (YYYY-MM-DD[THH:MM:SS], UTC); passed only to run and build invocations")
	fs.StringVar(&f.eventTimeEnd, "event-time-end", "", "dbt --event-time-end: microbatch models build batches up to this time (exclusive)")
	fs.BoolVar(&f.strict, "strict-waves", false, "per-node mode: start a wave only after the previous one finished")
	fs.StringVar(&f.execName, "executor", "warm", "warm (long-lived dbt workers) or core (one dbt process per invocation)")
	fs.IntVar(&f.workers, "workers", 0, "warm workers (0: one, running --concurrency nodes at once in a build session, DuckDB included; without sessions 1 on DuckDB, else --concurrency)")
	fs.IntVar(&f.recycleAfter, "recycle-after", 0, fmt.Sprintf("with several --workers forked from one parse: invocations each worker runs before a fresh fork replaces it (0: %d, -1: never)", executor.DefaultRecycleAfter))
	fs.StringVar(&f.results, "results", "", "write dbtorch's results JSON here")
	fs.StringVar(&f.runResults, "run-results", "", "write a dbt run_results.json here")
	fs.StringVar(&f.summary, "summary", "", "write a markdown summary here")
	fs.StringVar(&f.junit, "junit", "", "write JUnit XML here")
	fs.StringVar(&f.lineage, "lineage", "", "emit OpenLineage events: a file (JSON lines) or an http(s) endpoint URL (OPENLINEAGE_API_KEY, OPENLINEAGE_NAMESPACE honoured)")
	fs.StringVar(&f.lineageDatasets, "lineage-dataset-namespace", "", "OpenLineage namespace of every dataset, naming the warehouse as other producers do (e.g. postgres://db.example.com:5432); default: the adapter type and \"://\"")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	f.observe = addObserveFlags(fs)
	f.limits = addLimitFlags(fs)
	return fs, f
}

// addProjectFlags declares the flags that describe the dbt project
// (build's and plan's).
func (f *buildFlags) addProjectFlags(fs *flag.FlagSet) {
	projectDefault := os.Getenv("DBT_PROJECT_DIR")
	if projectDefault == "" {
		projectDefault = "."
	}
	fs.StringVar(&f.projectDir, "project-dir", projectDefault, "dbt project directory (default: $DBT_PROJECT_DIR, else the current directory)")
	fs.StringVar(&f.profilesDir, "profiles-dir", "", "dbt profiles directory (default: dbt's order: $DBT_PROFILES_DIR, else the project directory, else ~/.dbt)")
	fs.StringVar(&f.target, "target", "", "dbt target (default: $DBT_TARGET, else the profile's target)")
	fs.StringVar(&f.vars, "vars", "", "dbt vars, as dbt takes them: a YAML mapping such as {broken_model: true} (JSON is YAML)")
}

// addCacheFlags declares the cache's flags (build's and plan's).
func (f *buildFlags) addCacheFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.cacheDir, "cache-dir", "", "cache directory, or object store URL s3://bucket/prefix?endpoint=... (gs://, azblob://, file://) (empty: no cache)")
	fs.DurationVar(&f.cacheTTL, "cache-ttl", 0, "cache entry lifetime, applied at lookup (0: no expiry)")
	fs.BoolVar(&f.alwaysRunTests, "always-run-tests", false, "run every test even when what it tests was served from the cache")
}

// parseBuildFlags parses build's arguments. ok is false when the command
// ends here with code: after -h (0) or bad input (2, one line printed).
func parseBuildFlags(args []string, stderr io.Writer) (f *buildFlags, code int, ok bool) {
	fs, f := newBuildFlagSet("build", stderr)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return nil, code, false
	}
	if err := f.finish(fs); err != nil {
		return nil, badInput(stderr, "build", err), false
	}
	return f, 0, true
}

// finish checks the parsed flags against each other and applies the
// defaults that depend on others.
func (f *buildFlags) finish(fs *flag.FlagSet) error {
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	switch {
	case f.concurrency < 1 || f.retries < 0 || f.workers < 0 || f.threads < 0 || f.recycleAfter < -1:
		return errors.New("--concurrency must be positive, --retries, --workers and --threads not negative, --recycle-after -1 or more")
	case f.onlyFresh && f.cacheDir == "":
		return errors.New("--only-fresh-sources needs --cache-dir")
	case f.deferFlag && f.sel.state == "" && f.deferState == "":
		return errors.New("--defer needs --state or --defer-state (the manifest to defer to)")
	case f.killGrace < 0 || f.retryDelay < 0 || f.timeout < 0 || f.cacheTTL < 0:
		return errors.New("--kill-grace, --retry-delay, --node-timeout and --cache-ttl must not be negative")
	case f.execName != "warm" && f.execName != "core":
		return fmt.Errorf("unknown --executor %q (want warm or core)", f.execName)
	}
	for _, e := range []struct {
		name, text string
		into       *time.Time
	}{{"--event-time-start", f.eventTimeStart, &f.eventStart}, {"--event-time-end", f.eventTimeEnd, &f.eventEnd}} {
		if e.text == "" {
			continue
		}
		t, err := parseEventTime(e.text)
		if err != nil {
			return fmt.Errorf("%s %q: want YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339", e.name, e.text)
		}
		*e.into = t
	}
	if !f.eventStart.IsZero() && !f.eventEnd.IsZero() && !f.eventStart.Before(f.eventEnd) {
		return errors.New("--event-time-start must be before --event-time-end")
	}
	if f.threads > 0 && f.mode != "per-wave" && !f.set["concurrency"] {
		f.concurrency = f.threads // dbt's --threads is how many nodes run at once
	}
	return nil
}

// project describes the dbt project once, from the flags and the
// environment; everything below (executor, cache, freshness) runs on it.
// Directories are made absolute: dbt runs with its working directory
// elsewhere (warm workers, temp dirs). Its errors are bad input.
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

// preflight checks, before any dbt starts, what a user can get wrong: the
// project directory, the profile and the target, and that every output
// file can be written. Every error is bad input.
func (f *buildFlags) preflight(p dbt.Project) error {
	if err := p.Check(); err != nil {
		return fmt.Errorf("--project-dir: %w", err)
	}
	// A target that is still a template is left to dbt to judge.
	if _, err := p.Profile(); errors.Is(err, dbt.ErrNoProfile) || (errors.Is(err, dbt.ErrUnknownTarget) && !strings.Contains(err.Error(), "{{")) {
		return err
	}
	for _, out := range []struct{ flagName, path string }{{"results", f.results}, {"run-results", f.runResults},
		{"summary", f.summary}, {"junit", f.junit}, {"lineage", f.lineage}} {
		flagName, path := out.flagName, out.path
		if path == "" || strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
			continue
		}
		if err := checkWritable(path); err != nil {
			return fmt.Errorf("--%s: %w", flagName, err)
		}
	}
	return nil
}

// executorOptions are the options of either executor.
func (f *buildFlags) executorOptions(proj dbt.Project) executor.Options {
	o := executor.Options{Project: proj, State: f.sel.state, Defer: f.deferFlag, DeferState: f.deferState,
		FavorState: f.favorState, KillGrace: f.killGrace}
	if f.mode == "per-wave" {
		o.Threads = f.threads
		if f.failFast {
			o.ExtraArgs = []string{"--fail-fast"}
		}
	}
	return o
}

// checkWritable reports whether a file can be written at path: its
// directory exists or can be made, and a file can be created in it.
func checkWritable(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".dbtorch-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}

// parseEventTime reads an event time as dbt's --event-time-start takes it
// (a date, a date and time, in UTC when no offset is given).
func parseEventTime(s string) (time.Time, error) {
	var err error
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04:05", "2006-01-02 15:04:05", time.RFC3339} {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}
