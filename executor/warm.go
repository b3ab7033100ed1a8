package executor

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/pyworker"
	"github.com/dbtorch/dbtorch/manifest"
)

// WarmConfig configures the warm-worker executor. Only Project.Dir is
// required.
type WarmConfig struct {
	Options
	// Python is the interpreter that can import dbt. Empty: the one the
	// dbt script runs (dbt.Interpreter: its shebang, through symlinks).
	Python string
	// Unpatched runs the workers without their patches of dbt internals
	// (internal/pyworker/worker.py documents each), as does
	// DBTORCH_WORKER_PATCHES=off in the environment: slower per
	// invocation, the same results.
	Unpatched bool
	// Workers is the number of worker processes, each running one
	// invocation at a time. Zero means a default from the project's
	// profile: 1 on a DuckDB target, DefaultWorkers on other adapters,
	// and 1 when the profile cannot be read.
	//
	// DuckDB: one database file takes one writing process at a time, and
	// a worker may hold the file open between invocations, so several
	// workers on one DuckDB file fail with lock errors (reported as
	// KindConnection). Warm's MaxConcurrency (ConcurrencyLimiter) says
	// so; warehouses such as PostgreSQL take several.
	Workers int
}

// Warm is the warm-worker executor: a pool of long-lived Python processes
// that import dbt once, parse the project once (the manifest is kept per
// distinct set of vars), and run each invocation through dbt's
// programmatic runner (dbtRunner with that manifest). Every invocation
// still gets its own target and log directories and its results are read
// from its run_results.json, so Warm reports exactly what Core reports, at
// a fraction of the per-invocation cost.
//
// Beyond the import and the parse, a worker skips what dbt would redo in
// every invocation although nothing it depends on changed: it links each
// manifest's graph once, compiles the query-comment template once, does
// not build log events no logger writes (dbt's standard output is kept at
// warn level; it only feeds crash reports; the relation cache's events
// included), resolves a one-node selection from an index of the manifest
// instead of matching every node, and within one build (Request.BuildID)
// checks that a schema exists once, as one dbt build does; a pool of one
// worker also keeps dbt's relation cache from one invocation of a build to
// the next, as one dbt build keeps its own (dropped after any failure). internal/pyworker/worker.py documents each; WarmConfig.Unpatched
// turns them off.
//
// A worker runs one invocation at a time; Execute waits for an idle worker
// (or for ctx). A worker that dies is replaced and the nodes of its
// invocation are reported with KindCrash; when ctx ends during an
// invocation, that worker's process group is killed (SIGINT, then SIGKILL
// after KillGrace), the nodes are reported Cancelled, and the worker is
// replaced.
//
// Warm implements Executor, Preparer, ManifestProvider, ConcurrencyLimiter,
// RelationLister, SchemaCreator, HookRunner and io.Closer and is safe for
// concurrent use. Close stops every worker.
type Warm struct {
	cfg     WarmConfig // checked: Dir absolute, DBT and Python found, defaults set
	adapter string     // the target's adapter type, "" when unknown

	log     *slog.Logger
	workDir string
	script  string

	idle   chan *worker
	wg     sync.WaitGroup // replacement goroutines
	prepMu sync.Mutex     // serialises Prepare

	mu       sync.Mutex
	closed   bool
	started  bool
	workers  map[*worker]bool
	nextID   int
	ppFile   string        // partial_parse.msgpack of the first parse
	manifest lazyManifest  // manifest.json of the first parse
	done     chan struct{} // closed by Close
	spares   chan struct{} // closed when Prepare's background workers are settled
	noDirect atomic.Bool   // dbt refused show --inline-direct (dbt-core 1.8)

	// beforeLaunch, when set (tests), runs before worker id's process
	// starts.
	beforeLaunch func(ctx context.Context, id int)
}

var (
	_ Executor           = (*Warm)(nil)
	_ Preparer           = (*Warm)(nil)
	_ ManifestProvider   = (*Warm)(nil)
	_ ConcurrencyLimiter = (*Warm)(nil)
	_ io.Closer          = (*Warm)(nil)
)

// DefaultWorkers is Warm's number of workers when WarmConfig.Workers is
// zero and the target is not DuckDB: as many as an orchestrator runs at
// once by default. Each worker is a Python process holding a parsed
// project (100-200 MB).
const DefaultWorkers = 4

// MaxConcurrency implements ConcurrencyLimiter: 1 on a DuckDB target,
// otherwise the number of workers.
func (x *Warm) MaxConcurrency() (n int, reason string) {
	if x.adapter == "duckdb" {
		return 1, duckDBReason
	}
	return x.cfg.Workers, fmt.Sprintf("the warm executor runs one invocation per worker (%d workers)", x.cfg.Workers)
}

// NewWarm checks cfg and returns a Warm executor. Errors are as for
// NewCore. It starts no process: Prepare (or the first Execute) does.
func NewWarm(cfg WarmConfig) (*Warm, error) {
	opts, err := cfg.Options.check()
	if err != nil {
		return nil, err
	}
	cfg.Options = opts
	if cfg.Workers < 0 {
		return nil, &ConfigError{Field: "Workers", Value: fmt.Sprint(cfg.Workers), Reason: "negative"}
	}
	adapter := cfg.adapter()
	if cfg.Workers == 0 {
		cfg.Workers = 1
		if adapter != "" && adapter != "duckdb" {
			cfg.Workers = DefaultWorkers
		}
	} else if cfg.Workers > 1 && adapter == "duckdb" {
		cfg.Logger.Warn("dbtorch: several warm workers on a DuckDB target: "+duckDBReason, "workers", cfg.Workers)
	}
	if cfg.Python == "" {
		if cfg.Python, err = dbt.Interpreter(cfg.DBT); err != nil {
			return nil, fmt.Errorf("executor: python for warm workers: %w", err)
		}
	} else if cfg.Python, err = exec.LookPath(cfg.Python); err != nil {
		return nil, fmt.Errorf("executor: python for warm workers: %w", err)
	}
	wd, err := os.MkdirTemp(cfg.WorkDir, "dbtorch-warm-")
	if err != nil {
		return nil, fmt.Errorf("executor: work dir: %w", err)
	}
	script, err := pyworker.WriteScript(wd)
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	return &Warm{
		cfg: cfg, adapter: adapter, log: cfg.Logger, workDir: wd, script: script,
		idle: make(chan *worker, cfg.Workers), workers: map[*worker]bool{}, done: make(chan struct{}), spares: make(chan struct{}),
	}, nil
}

// worker is one Python worker of the pool.
type worker struct {
	id int
	pw *pyworker.Worker
	// err is set on a placeholder for a worker that failed to start.
	err error
}

// parseArgs returns the `dbt parse` command line for vars, writing into
// dir, starting from the partial-parse file pp when set.
func (x *Warm) parseArgs(vars dbt.Vars, dir, pp string) ([]string, error) {
	g := x.cfg.global(vars, dir)
	g.Quiet, g.PartialParseFile = true, pp
	return dbtargv.Parse(g)
}

// spawn starts a worker, running deps (when not nil) before its parse,
// and waits until it has parsed the project.
func (x *Warm) spawn(ctx context.Context, deps []string) (*worker, error) {
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	pp := x.ppFile
	x.mu.Unlock()

	dir := filepath.Join(x.workDir, fmt.Sprintf("worker-%d", id))
	vars, err := x.cfg.Vars.JSON()
	if err != nil {
		return nil, err
	}
	parse, err := x.parseArgs(x.cfg.Vars, dir, pp)
	if err != nil {
		return nil, err
	}
	if pp == "" {
		// The first worker parses alone; start it from the project's own
		// partial-parse file when there is one.
		seedPartialParse(x.cfg.Dir, filepath.Join(dir, "target"), x.log)
	}
	if x.beforeLaunch != nil {
		x.beforeLaunch(ctx, id)
	}
	start := time.Now()
	pw, err := pyworker.Launch(ctx, pyworker.Config{Python: x.cfg.Python, Script: x.script, Dir: x.cfg.Dir, Env: x.cfg.Env,
		Unpatched: x.cfg.Unpatched, Logger: x.log}, pyworker.Request{DepsArgs: deps, ParseArgs: parse, Key: vars})
	if err != nil {
		return nil, fmt.Errorf("executor: worker %d: %w", id, err)
	}
	ready := pw.Ready()
	x.log.Debug("dbtorch: worker ready", "worker", id, "pid", ready.PID, "elapsed", time.Since(start), "patches", ready.Patches, "enabled", ready.Enabled)
	x.mu.Lock()
	if x.ppFile == "" {
		x.ppFile = filepath.Join(dir, "target", "partial_parse.msgpack")
		x.manifest.path = filepath.Join(dir, "target", "manifest.json")
	}
	x.mu.Unlock()
	return &worker{id: id, pw: pw}, nil
}

// Prepare runs `dbt deps` when needed (unless NoDeps) and starts the
// workers, returning as soon as the first of them has parsed the project:
// invocations start on it while the others come up in the background and
// join the pool as each is ready (WaitWorkers waits for them). The first
// worker parses alone, starting from the project's own partial-parse file
// when an earlier dbt command left one; the others start from the first
// worker's. A worker other than the first that fails to start is logged
// and left out (the pool runs with fewer). A failed Prepare may be
// retried.
func (x *Warm) Prepare(ctx context.Context) error {
	x.prepMu.Lock()
	defer x.prepMu.Unlock()
	x.mu.Lock()
	closed, started := x.closed, x.started
	x.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if started {
		return nil
	}
	// The first worker runs `dbt deps` (when needed) before it parses.
	deps, err := x.cfg.depsArgs()
	if err != nil {
		return err
	}
	first, err := x.spawn(ctx, deps)
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil || x.closed {
		if first != nil {
			first.pw.Kill()
		}
		if x.closed {
			return ErrClosed
		}
		return err
	}
	x.workers[first] = true
	x.idle <- first
	x.started = true
	var spares sync.WaitGroup
	for range x.cfg.Workers - 1 {
		spares.Add(1)
		x.startWorker(false, spares.Done)
	}
	go func() {
		spares.Wait()
		close(x.spares)
	}()
	return nil
}

// WaitWorkers waits until every worker Prepare started in the background
// is ready or has failed to start, or until ctx ends (its error). It
// returns ErrNotPrepared when Prepare has not succeeded.
func (x *Warm) WaitWorkers(ctx context.Context) error {
	x.mu.Lock()
	started := x.started
	x.mu.Unlock()
	if !started {
		return ErrNotPrepared
	}
	select {
	case <-x.spares:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrNotPrepared is returned by Warm.WaitWorkers before Prepare succeeded.
var ErrNotPrepared = errors.New("executor: warm workers not started (Prepare first)")

// Manifest returns the manifest the first worker parsed (starting the
// workers if needed).
func (x *Warm) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	return x.manifest.load(ctx, x, &x.mu)
}

// Close stops every worker (idle ones at once; a running invocation's
// worker is killed) and removes the work directory. Later calls return
// ErrClosed.
func (x *Warm) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	close(x.done)
	ws := make([]*worker, 0, len(x.workers))
	for w := range x.workers {
		ws = append(ws, w)
	}
	x.mu.Unlock()
	for _, w := range ws {
		w.pw.Close(2 * time.Second)
	}
	x.wg.Wait()
	if x.cfg.KeepArtifacts {
		return nil
	}
	return os.RemoveAll(x.workDir)
}

// retire removes a dead or killed worker and starts its replacement in
// the background; the replacement (or, if it cannot start, a placeholder
// carrying the error) goes to the idle pool.
func (x *Warm) retire(w *worker) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.workers, w)
	if !x.closed {
		x.startWorker(true, nil)
	}
}

// startWorker starts a worker in the background (x.mu held, not closed);
// it joins the idle pool when ready. When it cannot start, a placeholder
// carrying the error goes to the pool if placeholder is set, else the
// failure is logged. done, when not nil, is called once it is settled.
func (x *Warm) startWorker(placeholder bool, done func()) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		if done != nil {
			defer done()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-x.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		nw, err := x.spawn(ctx, nil)
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.closed {
			if nw != nil {
				nw.pw.Kill()
			}
			return
		}
		switch {
		case err == nil:
			x.workers[nw] = true
		case placeholder:
			x.log.Error("dbtorch: replacing a warm worker failed", "err", err)
			nw = &worker{err: err}
		default:
			x.log.Error("dbtorch: a warm worker failed to start; running with fewer", "err", err)
			return
		}
		x.idle <- nw
	}()
}

// Execute runs one dbt invocation over req.Nodes on an idle worker and
// returns one Result per node, in request order (see the package
// documentation). It starts the workers first if Prepare was not called.
func (x *Warm) Execute(ctx context.Context, req Request) (*Response, error) {
	if err := checkRequest(&req); err != nil {
		return nil, err
	}
	if err := x.Prepare(ctx); err != nil {
		switch {
		case errors.Is(err, ErrClosed):
			return nil, err
		case ctx.Err() != nil:
			return x.failAll(req, ctx.Err(), nil), nil
		}
		// The project does not parse or the workers cannot start: report
		// it per node, classified from dbt's message.
		return x.failAll(req, nil, crashFailure("dbt warm workers could not start", err.Error())), nil
	}
	dir, err := os.MkdirTemp(x.workDir, "inv-")
	if err != nil {
		return nil, fmt.Errorf("executor: invocation dir: %w", err)
	}
	if !x.cfg.KeepArtifacts {
		defer os.RemoveAll(dir)
	}
	opts := x.cfg.options(req, dir)
	// The worker writes run_results.json itself: dbt would also write
	// manifest.json in every invocation.
	opts.NoWriteJSON = true
	// dbt's standard output only feeds crash reports (the tail of it);
	// below warn, the worker skips building the events at all.
	opts.LogLevel = "warn"
	if x.cfg.KeepArtifacts {
		// dbt's file log keeps its debug level (--log-level would lower
		// it to warn).
		opts.LogLevelFile = "debug"
	} else {
		// The log directory is removed after the invocation.
		opts.LogLevelFile = "none"
	}
	args, err := dbtargv.Build(opts)
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	args = append(args, dbtargv.ForCommand(string(req.Command), x.cfg.ExtraArgs)...)
	vars, err := opts.Vars.JSON()
	if err != nil {
		return nil, &ConfigError{Field: "Request.Vars", Reason: err.Error()}
	}
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	pp := x.ppFile
	x.mu.Unlock()
	parse, err := x.parseArgs(opts.Vars, filepath.Join(x.workDir, fmt.Sprintf("parse-%d", id)), pp)
	if err != nil {
		return nil, &ConfigError{Field: "Request.Vars", Reason: err.Error()}
	}

	var w *worker
	for w == nil {
		select {
		case w = <-x.idle:
		case <-ctx.Done():
			return x.failAll(req, ctx.Err(), nil), nil
		case <-x.done:
			return nil, ErrClosed
		}
		if w.err != nil {
			break
		}
		select {
		case <-w.pw.Done():
			// It died while idle: replace it and take another.
			x.log.WarnContext(ctx, "dbtorch: warm worker died while idle", "worker", w.id, "exit", w.pw.Result().Describe("python"), "output", w.pw.Tail(5))
			x.retire(w)
			w = nil
		default:
		}
	}
	if w.err != nil {
		// A placeholder: the replacement could not start. Try again.
		x.retire(w)
		return x.failAll(req, nil, crashFailure("dbt warm worker could not be started", w.err.Error())), nil
	}

	resp := &Response{Invocation: Invocation{Command: req.Command, Args: slices.Clone(args), Started: time.Now(), ExitCode: -1}}
	x.log.DebugContext(ctx, "dbt start (warm)", "worker", w.id, "command", req.Command, "nodes", len(req.Nodes), "attempt", req.Attempt, "build", req.BuildID)
	var fail *Failure
	healthy := true
	m, err := w.pw.Call(ctx, pyworker.Request{ID: id, Args: args, ParseArgs: parse, Key: vars,
		ResultsPath: filepath.Join(opts.TargetPath, "run_results.json"), Build: req.BuildID, NoHooks: req.NoHooks,
		Sole: x.cfg.Workers == 1}, x.cfg.KillGrace)
	switch {
	case err == nil && m.Success:
		resp.Invocation.ExitCode = 0
	case err == nil && m.Error != nil:
		// dbt raised instead of reporting nodes (exit 2).
		resp.Invocation.ExitCode = 2
		fail = crashFailure("dbt raised: "+*m.Error, w.pw.Tail(tailLines))
	case err == nil:
		resp.Invocation.ExitCode = 1
	case ctx.Err() != nil:
		// Cancelled: the worker was stopped; Complete reports the nodes.
		healthy = false
	default:
		healthy = false
		res := w.pw.Result()
		fail = crashFailure(fmt.Sprintf("dbt warm worker %d died (%s)", w.id, res.Describe("python")), w.pw.Tail(tailLines))
		resp.Invocation.ExitCode = res.ExitCode
	}
	resp.Invocation.Ended = time.Now()
	if !healthy {
		resp.Invocation.Stderr = w.pw.Tail(tailLines)
		x.retire(w)
	} else {
		x.idle <- w
	}
	rr, invID, rrErr := readRunResults(opts.TargetPath)
	resp.Invocation.InvocationID = invID
	switch {
	case rrErr != nil && fail == nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote an unreadable run_results.json: %v", rrErr), "")
	case rr == nil && fail == nil && healthy:
		fail = crashFailure("dbt wrote no run_results.json", w.pw.Tail(tailLines))
	}
	resp.Results = Complete(req.Nodes, rr, ctx.Err(), fail)
	x.log.DebugContext(ctx, "dbt done (warm)", "worker", w.id, "command", req.Command, "nodes", len(req.Nodes),
		"elapsed", resp.Invocation.Ended.Sub(resp.Invocation.Started), "invocation_id", invID)
	return resp, nil
}

// failAll reports every node of req as cancelled when ctxErr is not nil,
// else as failed with fail.
func (x *Warm) failAll(req Request, ctxErr error, fail *Failure) *Response {
	now := time.Now()
	return &Response{
		Invocation: Invocation{Command: req.Command, Started: now, Ended: now, ExitCode: -1},
		Results:    Complete(req.Nodes, nil, ctxErr, fail),
	}
}
