package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
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
	onlyFresh, fullRefresh, strict  bool
	vars                            string
	results, runResults, summary    string
	junit, lineage, lineageDatasets string
	quiet                           bool
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f buildFlags
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
	fs.DurationVar(&f.cacheTTL, "cache-ttl", 0, "cache entry lifetime (0: no expiry)")
	fs.BoolVar(&f.onlyFresh, "only-fresh-sources", false, "skip nodes reading stale sources (needs --cache-dir)")
	fs.StringVar(&f.strategy, "test-strategy", "immediate", "immediate, deferred or skip")
	fs.BoolVar(&f.fullRefresh, "full-refresh", false, "pass --full-refresh to dbt and bypass cache reads")
	fs.BoolVar(&f.strict, "strict-waves", false, "per-node mode: start a wave only after the previous one finished")
	fs.StringVar(&f.vars, "vars", "", "dbt vars as a JSON object")
	fs.StringVar(&f.execName, "executor", "warm", "warm (long-lived dbt workers) or core (one dbt process per invocation)")
	fs.IntVar(&f.workers, "workers", 0, "warm workers (0: 1 on DuckDB, else --concurrency)")
	fs.StringVar(&f.results, "results", "", "write dbtorch's results JSON here")
	fs.StringVar(&f.runResults, "run-results", "", "write a dbt run_results.json here")
	fs.StringVar(&f.summary, "summary", "", "write a markdown summary here")
	fs.StringVar(&f.junit, "junit", "", "write JUnit XML here")
	fs.StringVar(&f.lineage, "lineage", "", "emit OpenLineage events: a file (JSON lines) or an http(s) endpoint URL (OPENLINEAGE_API_KEY, OPENLINEAGE_NAMESPACE honoured)")
	fs.StringVar(&f.lineageDatasets, "lineage-dataset-namespace", "", "OpenLineage namespace of every dataset, naming the warehouse as other producers do (e.g. postgres://db.example.com:5432); default: the adapter type and \"://\"")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	obsf := addObserveFlags(fs)
	limf := addLimitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return badInput(stderr, "build", fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if f.projectDir == "" {
		return badInput(stderr, "build", errors.New("--project-dir is required"))
	}
	mode, err := orchestrator.ParseMode(f.mode)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	strategy, err := manifest.ParseTestStrategy(f.strategy)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	if f.concurrency < 1 || f.retries < 0 || f.workers < 0 {
		return badInput(stderr, "build", errors.New("--concurrency must be positive, --retries and --workers not negative"))
	}
	if f.onlyFresh && f.cacheDir == "" {
		return badInput(stderr, "build", errors.New("--only-fresh-sources needs --cache-dir"))
	}
	var vars map[string]any
	if f.vars != "" {
		if err := json.Unmarshal([]byte(f.vars), &vars); err != nil {
			return badInput(stderr, "build", fmt.Errorf("--vars: want a JSON object: %w", err))
		}
	}
	projectDir, err := filepath.Abs(f.projectDir)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	// dbt runs with its working directory elsewhere (warm workers, temp
	// dirs): a relative --profiles-dir must not depend on ours.
	if f.profilesDir != "" {
		if f.profilesDir, err = filepath.Abs(f.profilesDir); err != nil {
			return badInput(stderr, "build", err)
		}
	}
	logger, extraObs, flushObs, err := obsf.setup(ctx, stderr, os.Getenv)
	if err != nil {
		return badInput(stderr, "build", err)
	}
	defer flushObs()

	ex, m, closeEx, err := newBuildExecutor(ctx, f, projectDir, vars, logger)
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
		return 1
	}
	defer closeEx()

	g, err := manifest.NewGraph(m)
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
		return 1
	}
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
		c, err := openCache(ctx, f, projectDir, m, g, vars, logger)
		if err != nil {
			fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
			return 1
		}
		cfg.Cache = c
	}
	if f.runResults != "" {
		cfg.Reporters = append(cfg.Reporters, &artifacts.RunResults{Path: f.runResults})
	}
	if f.summary != "" {
		cfg.Reporters = append(cfg.Reporters, &artifacts.Summary{Path: f.summary})
	}
	if f.junit != "" {
		cfg.Reporters = append(cfg.Reporters, &artifacts.JUnit{Path: f.junit})
	}
	if f.lineage != "" {
		tr, terr := artifacts.OpenTransport(f.lineage, artifacts.HTTPOptions{APIKey: os.Getenv("OPENLINEAGE_API_KEY"), Logger: logger})
		if terr != nil {
			return badInput(stderr, "build", fmt.Errorf("--lineage: %w", terr))
		}
		defer func() {
			// Deliver what is queued, but never hang on an unreachable endpoint.
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if cerr := tr.Close(cctx); cerr != nil {
				fmt.Fprintf(stderr, "dbtorch build: --lineage: %v\n", cerr)
			}
		}()
		cfg.Reporters = append(cfg.Reporters, &artifacts.Lineage{Transport: tr, JobNamespace: os.Getenv("OPENLINEAGE_NAMESPACE"),
			DatasetNamespace: f.lineageDatasets})
	}
	var prog *progress
	if !f.quiet {
		prog = newProgress(stdout, isTerminal(stdout))
		cfg.Observer = prog
	}
	withObserver(&cfg, extraObs)
	closeLimits, err := limf.apply(ctx, &cfg, m, logger)
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
		Select: f.sel, Exclude: f.excl, Selector: f.selector, Indirect: f.indirect,
		Tests: strategy, FullRefresh: f.fullRefresh, OnlyFreshSources: f.onlyFresh, Vars: vars,
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

// newBuildExecutor returns the executor, the project's manifest (parsed
// by the executor) and a function that closes the executor.
func newBuildExecutor(ctx context.Context, f buildFlags, projectDir string, vars map[string]any, logger *slog.Logger) (executor.Executor, *manifest.Manifest, func(), error) {
	type provider interface {
		executor.Executor
		executor.ManifestProvider
		io.Closer
	}
	var ex provider
	switch f.execName {
	case "core":
		c, err := executor.NewCore(executor.CoreConfig{ProjectDir: projectDir, ProfilesDir: f.profilesDir, Target: f.target, Vars: vars, Logger: logger})
		if err != nil {
			return nil, nil, nil, err
		}
		ex = c
	case "warm":
		workers := f.workers
		if workers == 0 {
			workers = 1
			if f.mode != "per-wave" && !isDuckDB(projectDir, f.profilesDir, f.target) {
				workers = f.concurrency
			}
		}
		w, err := executor.NewWarm(executor.WarmConfig{ProjectDir: projectDir, ProfilesDir: f.profilesDir, Target: f.target,
			Vars: vars, Logger: logger, Workers: workers})
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

// isDuckDB guesses from profiles.yml whether the target uses DuckDB, so
// that warm workers are not started several to a DuckDB file. It errs on
// the side of DuckDB when the profile mentions it and the target cannot be
// told apart.
func isDuckDB(projectDir, profilesDir, target string) bool {
	dirs := []string{profilesDir, os.Getenv("DBT_PROFILES_DIR"), projectDir}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".dbt"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "profiles.yml"))
		if err != nil {
			continue
		}
		text := string(data)
		if !strings.Contains(text, "duckdb") {
			return false
		}
		if target == "" {
			return true
		}
		// The target's block: from "<target>:" to the next "type:" line.
		_, after, ok := strings.Cut(text, "\n"+indentOf(text, target)+target+":")
		if !ok {
			return true
		}
		_, typ, _ := strings.Cut(after, "type:")
		typ, _, _ = strings.Cut(typ, "\n")
		return strings.TrimSpace(typ) == "duckdb"
	}
	return false
}

// indentOf returns the indentation before "<name>:" in text.
func indentOf(text, name string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == name+":" {
			return line[:len(line)-len(strings.TrimLeft(line, " "))]
		}
	}
	return ""
}

// defaultTarget returns the name of the target dbt uses when --target is
// not given, for cache keys: $DBT_TARGET when set, else the `target:` of
// the project's profile (dbt_project.yml's `profile:`) in the first
// profiles.yml found in profilesDir, $DBT_PROFILES_DIR, projectDir and
// ~/.dbt. A value `{{ env_var('NAME') }}` or `{{ env_var('NAME',
// 'fallback') }}` is resolved with lookupEnv; anything it cannot read
// gives "default", dbt's own default target name.
func defaultTarget(projectDir, profilesDir string, lookupEnv func(string) (string, bool)) string {
	const fallback = "default"
	if t, ok := lookupEnv("DBT_TARGET"); ok && t != "" {
		return t
	}
	proj, err := os.ReadFile(filepath.Join(projectDir, "dbt_project.yml"))
	if err != nil {
		return fallback
	}
	profile, ok := yamlTopValue(string(proj), "profile", lookupEnv)
	if !ok || profile == "" {
		return fallback
	}
	envDir, _ := lookupEnv("DBT_PROFILES_DIR")
	dirs := []string{profilesDir, envDir, projectDir}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".dbt"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "profiles.yml"))
		if err != nil {
			continue
		}
		if t, ok := profileTarget(string(data), profile, lookupEnv); ok && t != "" {
			return t
		}
		return fallback
	}
	return fallback
}

// yamlTopValue returns the scalar value of the top-level key in a YAML
// document (resolved as by yamlScalar).
func yamlTopValue(doc, key string, lookupEnv func(string) (string, bool)) (string, bool) {
	for _, line := range strings.Split(doc, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return yamlScalar(v, lookupEnv)
		}
	}
	return "", false
}

// profileTarget returns the `target:` directly under the top-level key
// profile of a profiles.yml document.
func profileTarget(doc, profile string, lookupEnv func(string) (string, bool)) (string, bool) {
	in, indent := false, ""
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		lead := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if lead == "" {
			if in {
				return "", false
			}
			name, _, _ := strings.Cut(strings.TrimRight(trimmed, " "), ":")
			in = strings.Trim(name, `"'`) == profile
			continue
		}
		if !in {
			continue
		}
		if indent == "" {
			indent = lead
		}
		if lead != indent {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, "target:"); ok {
			return yamlScalar(v, lookupEnv)
		}
	}
	return "", false
}

// yamlScalar reads a plain or quoted YAML scalar, without a trailing
// comment; a value that is one env_var call is resolved with lookupEnv
// (its fallback when unset). Any other template is not understood.
func yamlScalar(v string, lookupEnv func(string) (string, bool)) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			v = v[1 : 1+end]
		}
	} else if before, _, ok := strings.Cut(v, " #"); ok {
		v = strings.TrimSpace(before)
	}
	if !strings.Contains(v, "{{") {
		return v, true
	}
	m := envVarRE.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	if val, ok := lookupEnv(m[1]); ok {
		return val, true
	}
	if m[2] != "" {
		return m[3], true
	}
	return "", false
}

// envVarRE matches `{{ env_var('NAME') }}` and `{{ env_var('NAME',
// 'fallback') }}` (either quote).
var envVarRE = regexp.MustCompile(`^\{\{-?\s*env_var\(\s*['"]([^'"]+)['"]\s*(,\s*['"]([^'"]*)['"]\s*)?\)\s*-?\}\}$`)

// openCache opens the cache directory for this build (and takes a source
// freshness snapshot when --only-fresh-sources asks for one).
func openCache(ctx context.Context, f buildFlags, projectDir string, m *manifest.Manifest, g *manifest.Graph, vars map[string]any, logger *slog.Logger) (orchestrator.Cache, error) {
	store := cache.NewStore(afero.NewOsFs(), f.cacheDir, cache.StoreOptions{Logger: logger})
	target := f.target
	if target == "" {
		target = defaultTarget(projectDir, f.profilesDir, os.LookupEnv)
	}
	kc := cache.KeyConfig{Project: dbt.Project{Dir: projectDir, Vars: vars, Target: target}}
	var opts orchcache.Options
	opts.Logger = logger
	if f.onlyFresh {
		fr, err := cache.RunFreshness(ctx, cache.FreshnessOptions{
			DBT: os.Getenv("DBTORCH_DBT"), ProjectDir: projectDir, ProfilesDir: f.profilesDir, Target: f.target, Vars: vars,
		})
		if err != nil {
			opts.FreshnessErr = err
		} else {
			kc.Freshness = fr
		}
	}
	s, err := cache.New(store, cache.Options{TTL: f.cacheTTL, Logger: logger}).Open(m, g, kc)
	if err != nil {
		return nil, err
	}
	return orchcache.New(s, opts), nil
}

// writeResults writes the results contract to path atomically.
func writeResults(path string, run *orchestrator.Run) error {
	var buf bytes.Buffer
	if err := run.WriteJSON(&buf); err != nil {
		return err
	}
	return atomicfile.Write(nil, path, buf.Bytes(), 0o644)
}

// printSummary prints the counts, the failures and the skips.
func printSummary(w io.Writer, run *orchestrator.Run) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nDone in %s: %d nodes, %d success, %d error, %d skipped, %d cached\n",
		run.CompletedAt.Sub(run.StartedAt).Round(10*time.Millisecond), len(run.Results),
		run.Count(orchestrator.Success), run.Count(orchestrator.Error), run.Count(orchestrator.Skipped), run.Count(orchestrator.Cached))
	for _, w := range run.Warnings {
		fmt.Fprintf(&b, "  WARNING %s\n", w)
	}
	for _, r := range run.Results {
		if r.Status == orchestrator.Error && r.Err != nil {
			fmt.Fprintf(&b, "  ERROR %s [%s]: %s\n", r.UniqueID, r.Err.Kind, firstLine(r.Err.Message))
		}
	}
	skipped := map[string]int{}
	for _, r := range run.Results {
		if r.Status == orchestrator.Skipped {
			skipped[r.SkipReason]++
		}
	}
	reasons := make([]string, 0, len(skipped))
	for r := range skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "  skipped %d: %s\n", skipped[r], r)
	}
	io.WriteString(w, b.String())
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if l, _, ok := strings.Cut(s, "\n"); ok {
		return l + " ..."
	}
	return s
}

// progress shows a build's progress: on a terminal one status line,
// redrawn in place, with a line per finished node above it; otherwise one
// plain line per finished node.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	tick *time.Ticker
	done chan struct{}

	start                          time.Time
	total, finished, running, retr int
	counts                         map[orchestrator.Status]int
}

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, counts: map[orchestrator.Status]int{}, done: make(chan struct{})}
	if tty {
		p.tick = time.NewTicker(500 * time.Millisecond)
		go func() {
			for {
				select {
				case <-p.tick.C:
					p.mu.Lock()
					p.redraw()
					p.mu.Unlock()
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

func (p *progress) stop() {
	if p.tick != nil {
		p.tick.Stop()
	}
	close(p.done)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// Event implements orchestrator.Observer.
func (p *progress) Event(_ context.Context, e orchestrator.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Type {
	case orchestrator.RunStarted:
		p.start = e.Time
		p.total = len(e.Plan.Nodes)
		fmt.Fprintf(p.w, "Building %d nodes in %d waves (run %s)\n", p.total, len(e.Plan.Waves), e.RunID)
	case orchestrator.NodeStarted:
		if e.Attempt == 1 {
			p.running++
		}
	case orchestrator.NodeRetrying:
		p.retr++
		p.line(fmt.Sprintf("RETRY  %s (attempt %d failed: %s; next in %s)", e.Node, e.Attempt, errText(e.Error), e.Delay.Round(time.Millisecond)))
	case orchestrator.NodeFinished:
		r := e.Result
		if len(r.Attempts) > 0 {
			p.running--
		}
		p.finished++
		p.counts[r.Status]++
		p.line(nodeLine(p.finished, p.total, r))
	}
	p.redraw()
}

func errText(e *orchestrator.NodeError) string {
	if e == nil {
		return "error"
	}
	return string(e.Kind) + ": " + firstLine(e.Message)
}

func nodeLine(k, total int, r *orchestrator.NodeResult) string {
	word := map[orchestrator.Status]string{orchestrator.Success: "OK", orchestrator.Error: "ERROR",
		orchestrator.Skipped: "SKIP", orchestrator.Cached: "CACHED"}[r.Status]
	if r.Status == orchestrator.Success && r.DBTStatus != "" && r.DBTStatus != "success" {
		word = strings.ToUpper(r.DBTStatus)
	}
	s := fmt.Sprintf("%*d/%d %-6s %s", len(fmt.Sprint(total)), k, total, word, r.UniqueID)
	switch r.Status {
	case orchestrator.Success, orchestrator.Error:
		s += fmt.Sprintf(" (%s", r.CompletedAt.Sub(r.StartedAt).Round(10*time.Millisecond))
		if len(r.Attempts) > 1 {
			s += fmt.Sprintf(", %d attempts", len(r.Attempts))
		}
		if r.RowsAffected != nil {
			s += fmt.Sprintf(", %d rows", *r.RowsAffected)
		}
		s += ")"
		if r.Err != nil {
			s += " " + errText(r.Err)
		}
	case orchestrator.Skipped:
		s += " (" + r.SkipReason
		if len(r.FailedUpstream) > 0 {
			s += ": " + strings.Join(r.FailedUpstream, ", ")
		}
		s += ")"
	}
	return s
}

// line prints a permanent line (above the status line on a terminal).
func (p *progress) line(s string) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintln(p.w, s)
}

// redraw draws the status line on a terminal.
func (p *progress) redraw() {
	if !p.tty || p.total == 0 {
		return
	}
	const width = 24
	done := p.finished * width / p.total
	bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
	fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d  running %d  ok %d  error %d  skipped %d  cached %d  %s",
		bar, p.finished, p.total, p.running, p.counts[orchestrator.Success], p.counts[orchestrator.Error],
		p.counts[orchestrator.Skipped], p.counts[orchestrator.Cached], time.Since(p.start).Round(time.Second))
}
