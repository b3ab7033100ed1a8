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
	"strings"
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
	// invocation at a time (but for the nodes of a build session). Zero
	// means a default (below).
	//
	// DuckDB: one database file takes one writing process at a time, and
	// a worker may hold the file open between invocations, so several
	// workers on one DuckDB file fail with lock errors (reported as
	// KindConnection). Warm's MaxConcurrency (ConcurrencyLimiter) says
	// so; warehouses such as PostgreSQL take several.
	//
	// With build sessions (SessionThreads) zero means one worker. Where
	// sessions are off, or the worker cannot run them (a dbt-core minor
	// version the session was not proven on), zero means SessionThreads
	// workers on adapters other than DuckDB and 1 on DuckDB and when the
	// profile cannot be read.
	Workers int
	// SessionThreads is how many nodes one worker runs at once in its
	// build session: with one worker, the per-node requests of a build
	// (one node, Request.BuildID set, run, test, seed or snapshot, none
	// of --empty, --sample or the event-time window) run inside one
	// long-lived `dbt build --threads SessionThreads` task of the worker,
	// node by node as they are requested, as dbt build runs its nodes:
	// without a dbt invocation per node (command line, profile and
	// project loading, adapter registration, new connections, the
	// relation cache's listing), with one relation cache and dbt's
	// per-thread connections. Any other request waits for the session's
	// nodes and ends it; so do project hooks the request runs (without
	// Request.NoHooks). Zero means DefaultWorkers, on DuckDB too (the
	// session is one process, and one process may write to one DuckDB file
	// from several threads, as `dbt build --threads N` does), and 1 when the
	// profile cannot be read. Where sessions do not run, the session's
	// threads are not used on DuckDB: one worker runs one invocation at a
	// time (see Workers).
	// Sessions are off with Unpatched, DBTORCH_WORKER_PATCHES=off,
	// KeepArtifacts (a session's nodes share one dbt log, not one per
	// invocation) and several Workers (each worker's relation cache must
	// be the build's only one).
	SessionThreads int
	// NoFork starts each of several Workers with a parse of its own.
	// By default (on Linux) one zygote process parses the project once
	// and the workers are forked from it: ready right after that
	// parse instead of each after one of its own (on 2 cores, four
	// parses at once take about twice one), sharing the parsed manifest's
	// memory with the zygote until they write to it, and a dead worker's
	// replacement is forked too. A forked worker dies with its zygote;
	// if the zygote dies, workers parse on their own again.
	NoFork bool
	// RecycleAfter is how many invocations a forked worker (see NoFork)
	// runs before a fresh fork of the zygote takes its place; zero means
	// DefaultRecycleAfter, a negative value never. A forked worker shares
	// the parsed manifest's memory with the zygote until it writes to it,
	// and every invocation writes
	// (Python's reference counts are in every object), so a long-lived
	// fork ends up with its own copy of much of it. The fresh fork is
	// started when the worker has ended its last invocation, as it
	// exits. The first workers are staggered (the k-th of n starts
	// k*RecycleAfter/n invocations along), so that they are not all
	// replaced at once. Four workers on a 1,000-model PostgreSQL project
	// peaked at 399 MB of PSS recycled after 8 (the default) against 528
	// MB never, in about the same time (243 s against 238 s; by hand,
	// README). Workers that parsed on their own are never recycled.
	RecycleAfter int
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
// Build sessions (WarmConfig.SessionThreads): by default one worker runs
// a build's per-node requests inside one long-lived `dbt build` task, up
// to SessionThreads nodes at once, each reported from its own
// one-result run_results.json exactly as an invocation of its own reports
// it; Response.Invocation.Args is then the `dbt build` command line of
// the node in the session. When ctx ends for a node of a session, the
// worker cancels that node's database connection and the node is reported
// Cancelled; if the worker has not answered within KillGrace it is killed
// and replaced, and its other nodes are reported with KindCrash, as when
// a worker dies mid-session.
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

	mu      sync.Mutex
	closed  bool
	started bool
	workers map[*worker]bool
	nextID  int
	// forks counts the workers forked so far (RecycleAfter's stagger).
	forks    int
	ppFile   string        // partial_parse.msgpack of the first parse
	manifest lazyManifest  // manifest.json of the first parse
	done     chan struct{} // closed by Close
	spares   chan struct{} // closed when Prepare's background workers are settled
	noDirect atomic.Bool   // dbt refused show --inline-direct (dbt-core 1.8)
	// zygote, when set (Prepare, with fork), forks the workers.
	zygote *pyworker.Zygote
	fork   bool
	// sessions says that build sessions may run (WarmConfig.SessionThreads);
	// session that the first worker runs them (set by Prepare);
	// autoWorkers that Workers was zero.
	sessions, session, autoWorkers bool

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

// DefaultRecycleAfter is WarmConfig.RecycleAfter when it is zero: how
// many invocations a forked worker runs before a fresh fork of the
// zygote takes its place.
const DefaultRecycleAfter = 8

// MaxConcurrency implements ConcurrencyLimiter: with build sessions of
// several threads (WarmConfig.SessionThreads; before Prepare, when they
// are not off) the session's threads; else 1 on a DuckDB target and
// otherwise the number of workers.
func (x *Warm) MaxConcurrency() (n int, reason string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.sessions && (x.session || !x.started) && x.cfg.SessionThreads > 1 {
		return x.cfg.SessionThreads, fmt.Sprintf("the warm executor's build session runs %d nodes at once", x.cfg.SessionThreads)
	}
	if x.adapter == "duckdb" {
		return 1, duckDBReason
	}
	return x.cfg.Workers, fmt.Sprintf("the warm executor runs one invocation per worker (%d workers)", x.cfg.Workers)
}

// patchesOff reports whether env (nil: the process's) turns the worker's
// patches off (DBTORCH_WORKER_PATCHES=off).
func patchesOff(env []string) bool {
	if env == nil {
		env = os.Environ()
	}
	off := false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "DBTORCH_WORKER_PATCHES" {
			off = strings.EqualFold(v, "off")
		}
	}
	return off
}

// defaultWorkers is the number of workers without sessions when
// WarmConfig.Workers is zero: threads (SessionThreads) on adapters other
// than DuckDB, 1 on DuckDB and when the adapter is unknown ("").
func defaultWorkers(adapter string, threads int) int {
	if adapter != "" && adapter != "duckdb" {
		return threads
	}
	return 1
}

// defaultThreads is WarmConfig.SessionThreads when it is zero:
// DefaultWorkers when the target's adapter is known, DuckDB included (a
// session is one process, and one process may run several threads on one
// DuckDB file, as `dbt build --threads N` does), 1 when it is unknown ("").
func defaultThreads(adapter string) int {
	if adapter == "" {
		return 1
	}
	return DefaultWorkers
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
	if cfg.SessionThreads < 0 {
		return nil, &ConfigError{Field: "SessionThreads", Value: fmt.Sprint(cfg.SessionThreads), Reason: "negative"}
	}
	switch {
	case cfg.RecycleAfter == 0:
		cfg.RecycleAfter = DefaultRecycleAfter
	case cfg.RecycleAfter < 0:
		cfg.RecycleAfter = 0 // never
	}
	adapter := cfg.adapter()
	if cfg.SessionThreads == 0 {
		cfg.SessionThreads = defaultThreads(adapter)
	}
	sessions := !cfg.Unpatched && !cfg.KeepArtifacts && !patchesOff(cfg.Env) && cfg.Workers <= 1
	auto := cfg.Workers == 0
	if cfg.Workers == 0 {
		cfg.Workers = defaultWorkers(adapter, cfg.SessionThreads)
		if sessions {
			cfg.Workers = 1
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
		// Room for every slot of every worker, also when Prepare falls
		// back from a session to several workers.
		idle:    make(chan *worker, max(cfg.Workers, defaultWorkers(adapter, cfg.SessionThreads))*cfg.SessionThreads),
		workers: map[*worker]bool{}, done: make(chan struct{}), spares: make(chan struct{}),
		sessions: sessions, autoWorkers: auto, fork: cfg.Workers > 1 && !cfg.NoFork,
	}, nil
}

// worker is one Python worker of the pool.
type worker struct {
	id int
	pw *pyworker.Worker
	// err is set on a placeholder for a worker that failed to start.
	err error
	// forked says that the worker was forked from the zygote, and so is
	// recycled (WarmConfig.RecycleAfter).
	forked bool
	// served counts the invocations the worker took; last says that its
	// replacement was started when it took its last (x.mu guards both).
	served int
	last   bool
}

// parseArgs returns the `dbt parse` command line for vars, writing into
// dir, starting from the partial-parse file pp when set.
func (x *Warm) parseArgs(vars dbt.Vars, dir, pp string) ([]string, error) {
	g := x.cfg.global(vars, dir)
	g.Quiet, g.PartialParseFile = true, pp
	return dbtargv.Parse(g)
}

// spawn starts a worker, running deps (when not nil) before its parse,
// and waits until it has parsed the project. With a zygote (Prepare) the
// worker is forked from it, with its parse; when that fails (the zygote
// died) the worker parses on its own.
func (x *Warm) spawn(ctx context.Context, deps []string) (*worker, error) {
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	z := x.zygote
	x.mu.Unlock()
	if x.beforeLaunch != nil {
		x.beforeLaunch(ctx, id)
	}
	if z != nil && z.Alive() {
		start := time.Now()
		pw, err := z.Fork(ctx)
		if err == nil {
			x.log.Debug("dbtorch: worker forked", "worker", id, "pid", pw.Pid(), "zygote", z.Pid(), "elapsed", time.Since(start))
			w := &worker{id: id, pw: pw, forked: true}
			x.mu.Lock()
			if k := x.forks; k < x.cfg.Workers {
				// The first workers are recycled one after another,
				// not all at once: the k-th of n starts k/n of the
				// way to its replacement.
				w.served = k * x.cfg.RecycleAfter / x.cfg.Workers
			}
			x.forks++
			x.mu.Unlock()
			return w, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("executor: worker %d: %w", id, err)
		}
		x.log.Warn("dbtorch: forking a warm worker failed; it parses on its own", "worker", id, "err", err)
	}
	cfg, req, dir, err := x.startRequest(fmt.Sprintf("worker-%d", id), deps)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pw, err := pyworker.Launch(ctx, cfg, req)
	if err != nil {
		return nil, fmt.Errorf("executor: worker %d: %w", id, err)
	}
	x.log.Debug("dbtorch: worker ready", "worker", id, "pid", pw.Pid(), "elapsed", time.Since(start), "patches", pw.Ready().Patches, "enabled", pw.Ready().Enabled)
	x.parsed(dir)
	return &worker{id: id, pw: pw}, nil
}

// launchZygote starts the pool's zygote, running deps (when not nil)
// before its parse (see startRequest).
func (x *Warm) launchZygote(ctx context.Context, deps []string) (*pyworker.Zygote, error) {
	cfg, req, dir, err := x.startRequest("zygote", deps)
	if err != nil {
		return nil, err
	}
	if x.beforeLaunch != nil {
		x.beforeLaunch(ctx, 0)
	}
	start := time.Now()
	z, err := pyworker.LaunchZygote(ctx, cfg, req)
	if err != nil {
		return nil, fmt.Errorf("executor: zygote: %w", err)
	}
	x.log.Debug("dbtorch: zygote ready", "pid", z.Pid(), "elapsed", time.Since(start), "patches", z.Ready().Patches, "warmed", z.Ready().Warmed)
	x.parsed(dir)
	return z, nil
}

// startRequest returns the configuration and start request of a worker
// (or zygote) whose parse writes into dir, the work directory's name,
// running deps (when not nil) first. Once it is ready, parsed(dir).
func (x *Warm) startRequest(name string, deps []string) (cfg pyworker.Config, req pyworker.Request, dir string, err error) {
	x.mu.Lock()
	pp := x.ppFile
	x.mu.Unlock()
	dir = filepath.Join(x.workDir, name)
	vars, err := x.cfg.Vars.JSON()
	if err != nil {
		return cfg, req, "", err
	}
	parse, err := x.parseArgs(x.cfg.Vars, dir, pp)
	if err != nil {
		return cfg, req, "", err
	}
	if pp == "" {
		// The first worker parses alone; start it from the project's own
		// partial-parse file when there is one.
		seedPartialParse(x.cfg.Dir, filepath.Join(dir, "target"), x.log)
	}
	cfg = pyworker.Config{Python: x.cfg.Python, Script: x.script, Dir: x.cfg.Dir, Env: x.cfg.Env, Unpatched: x.cfg.Unpatched, Logger: x.log}
	req = pyworker.Request{DepsArgs: deps, ParseArgs: parse, Key: vars}
	return cfg, req, dir, nil
}

// parsed records that a worker's parse into dir is done: the pool's first
// sets the partial-parse file the later ones start from and the manifest
// Manifest reads.
func (x *Warm) parsed(dir string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ppFile == "" {
		x.ppFile = filepath.Join(dir, "target", "partial_parse.msgpack")
		x.manifest.path = filepath.Join(dir, "target", "manifest.json")
	}
}

// Prepare runs `dbt deps` when needed (unless NoDeps) and starts the
// workers, returning as soon as the first of them has parsed the project:
// invocations start on it while the others come up in the background and
// join the pool as each is ready (WaitWorkers waits for them). The first
// parse runs alone, starting from the project's own partial-parse file
// when an earlier dbt command left one. With several Workers (unless
// NoFork) that parse is a zygote's and every worker is forked from it;
// otherwise the first worker parses and the others start from its
// partial-parse file. A worker other than the first that fails to start is logged
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
	x.mu.Lock()
	have := x.zygote != nil && x.zygote.Alive()
	x.mu.Unlock()
	if x.fork && !have {
		z, err := x.launchZygote(ctx, deps)
		switch {
		case err == nil:
			x.mu.Lock()
			closed := x.closed
			if !closed {
				if x.zygote != nil {
					x.zygote.Kill()
				}
				x.zygote = z
			}
			x.mu.Unlock()
			if closed {
				z.Kill()
				return ErrClosed
			}
			deps = nil
		case errors.Is(err, pyworker.ErrNoFork):
			x.log.Debug("dbtorch: warm workers parse one by one", "reason", err)
		default:
			return err
		}
	}
	first, err := x.spawn(ctx, deps)
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil || x.closed {
		if first != nil {
			first.pw.Kill()
		}
		if x.zygote != nil && x.closed {
			x.zygote.Kill()
		}
		if x.closed {
			return ErrClosed
		}
		return err
	}
	x.session = x.sessions && first.pw.Ready().Session
	if x.sessions && !x.session {
		x.log.Debug("dbtorch: the warm worker runs no build sessions on this dbt", "worker", first.id)
		if x.autoWorkers {
			x.cfg.Workers = defaultWorkers(x.adapter, x.cfg.SessionThreads)
		}
	}
	x.workers[first] = true
	x.join(first)
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
	// After the workers: the ones it forked die with it.
	x.mu.Lock()
	z := x.zygote
	x.mu.Unlock()
	if z != nil {
		z.Close(2 * time.Second)
	}
	if x.cfg.KeepArtifacts {
		return nil
	}
	return os.RemoveAll(x.workDir)
}

// runsSessions reports whether worker w runs build sessions: the pool's
// first worker did (Prepare) and w says it can.
func (x *Warm) runsSessions(w *worker) bool {
	return x.session && w.pw != nil && w.pw.Ready().Session
}

// slots returns how many requests worker w takes at once: the session's
// threads when it runs build sessions, else 1.
func (x *Warm) slots(w *worker) int {
	if x.runsSessions(w) {
		return x.cfg.SessionThreads
	}
	return 1
}

// join puts one idle-pool entry per slot of w in the pool (x.mu held).
func (x *Warm) join(w *worker) {
	for range x.slots(w) {
		x.idle <- w
	}
}

// release returns a slot of w to the idle pool after a request, unless w
// was retired meanwhile (another of its requests saw it die).
func (x *Warm) release(w *worker) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case !x.workers[w]:
	case w.last:
		// Recycled: it exits, and a fresh fork takes its place. Only
		// now, not when it took its last invocation: a replacement
		// running beside it would hold its own copy of the shared
		// pages while the old one still holds its.
		delete(x.workers, w)
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			w.pw.Close(2 * time.Second)
		}()
		if !x.closed {
			x.startWorker(true, nil)
		}
	default:
		x.idle <- w
	}
}

// recycles reports whether worker w takes its last invocation now
// (WarmConfig.RecycleAfter); if so its replacement is started when it
// has ended it (release; x.mu held).
func (x *Warm) recycles(w *worker) bool {
	if !w.forked || x.cfg.RecycleAfter == 0 || x.runsSessions(w) || !x.workers[w] || x.closed {
		return false
	}
	w.served++
	if w.served < x.cfg.RecycleAfter {
		return false
	}
	w.last = true
	return true
}

// retire removes a dead or killed worker and starts its replacement in
// the background; the replacement (or, if it cannot start, a placeholder
// carrying the error) goes to the idle pool. The worker's other slots
// still in the pool are dropped; retiring a worker again (from another of
// its slots) does nothing.
func (x *Warm) retire(w *worker) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if w.err == nil {
		if !x.workers[w] {
			return
		}
		delete(x.workers, w)
		for range len(x.idle) {
			select {
			case o := <-x.idle:
				if o != w {
					x.idle <- o
				}
			default:
			}
		}
	}
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
			x.join(nw)
		case placeholder:
			x.log.Error("dbtorch: replacing a warm worker failed", "err", err)
			x.idle <- &worker{err: err}
		default:
			x.log.Error("dbtorch: a warm worker failed to start; running with fewer", "err", err)
		}
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

	x.mu.Lock()
	if x.recycles(w) {
		x.log.DebugContext(ctx, "dbtorch: warm worker recycled after this invocation", "worker", w.id, "invocations", w.served)
	}
	x.mu.Unlock()
	preq := pyworker.Request{ID: id, Args: args, ParseArgs: parse, Key: vars,
		ResultsPath: filepath.Join(opts.TargetPath, "run_results.json"), Build: req.BuildID, NoHooks: req.NoHooks,
		Sole: x.cfg.Workers == 1}
	shown := args
	if x.runsSessions(w) {
		if sess, err := x.sessionOf(req, vars); err != nil {
			return nil, err
		} else if sess != nil {
			preq.Session, preq.Nodes = sess, make([]string, len(req.Nodes))
			for i, n := range req.Nodes {
				preq.Nodes[i] = n.UniqueID
			}
			shown = sess.Args
		}
	}
	resp := &Response{Invocation: Invocation{Command: req.Command, Args: slices.Clone(shown), Started: time.Now(), ExitCode: -1}}
	x.log.DebugContext(ctx, "dbt start (warm)", "worker", w.id, "command", req.Command, "nodes", len(req.Nodes), "attempt", req.Attempt, "build", req.BuildID,
		"session", preq.Session != nil)
	var fail *Failure
	healthy := true
	m, err := w.pw.Call(ctx, preq, x.cfg.KillGrace)
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
		// Cancelled: the worker was stopped, or (a session's node) it
		// cancelled the node and answered; Complete reports the nodes.
		healthy = w.pw.Alive()
	case preq.Session != nil:
		// The worker died with this node in its session, whatever killed
		// it (another node, a cancelled node's worker killed): KindCrash,
		// so that a retry policy runs the node again.
		healthy = false
		res := w.pw.Result()
		fail = &Failure{Kind: KindCrash, Message: fmt.Sprintf("dbt warm worker %d died (%s) while running the node in its build session\n%s",
			w.id, res.Describe("python"), w.pw.Tail(tailLines))}
		resp.Invocation.ExitCode = res.ExitCode
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
		x.release(w)
	}
	var rr []Result
	var invID string
	var rrErr error
	if m.RunResults != "" {
		// A build session's reply carries run_results.json instead of a
		// file (sessions do not run with KeepArtifacts); a failed Call's
		// reply is empty.
		rr, invID, rrErr = ParseRunResults([]byte(m.RunResults))
	} else {
		rr, invID, rrErr = readRunResults(opts.TargetPath)
	}
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

// sessionOf returns the build session request for req (vars: its vars
// as JSON), or nil when req runs as an invocation of its own: a session
// takes the nodes of a build (BuildID) when the session's `dbt build`
// runs each of them with the runner req's command would: a model run by
// run, a seed by seed, a snapshot by snapshot, a data or unit test by
// test, and any of these by build; several nodes only when they are
// Independent (a wave: they run at once, on the session's threads, and
// none waits for another, as in one invocation of one wave), without the flags only some commands take (--empty,
// --sample, the event-time window, --store-failures: they would reach
// every node of a session), with the worker's sessions on
// (WarmConfig.SessionThreads). The session is started by a `dbt build`
// over req's first node with --threads SessionThreads; its key is
// everything of that command line but the selection, with the build and
// vars.
func (x *Warm) sessionOf(req Request, vars string) (*pyworker.Session, error) {
	switch {
	case !x.session, len(req.Nodes) == 0, len(req.Nodes) > 1 && !req.Independent, req.BuildID == "",
		req.Empty, req.Sample != "", !req.EventTimeStart.IsZero(), !req.EventTimeEnd.IsZero(),
		dbtargv.HasCommandFlags(x.cfg.ExtraArgs):
		return nil, nil
	}
	for _, n := range req.Nodes {
		switch rt := n.ResourceType; {
		case req.Command == Run && rt == manifest.Model, req.Command == Seed && rt == manifest.Seed,
			req.Command == Snapshot && rt == manifest.Snapshot, req.Command == Test && (rt == manifest.Test || rt == manifest.UnitTest),
			req.Command == Build && (rt == manifest.Model || rt == manifest.Seed || rt == manifest.Snapshot || rt == manifest.Test || rt == manifest.UnitTest):
		default:
			// dbt build would run another runner (an exposure's, a
			// function's) than the command does.
			return nil, nil
		}
	}
	o := x.cfg.options(Request{Command: Build, Nodes: req.Nodes[:1], FullRefresh: req.FullRefresh, Vars: req.Vars}, "")
	o.NoWriteJSON, o.LogLevel, o.LogLevelFile = true, "warn", "none"
	o.Threads = x.cfg.SessionThreads
	args, err := dbtargv.Build(o)
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	args = append(args, dbtargv.ForCommand(string(Build), x.cfg.ExtraArgs)...)
	sel, err := dbtargv.Selector(req.Nodes[0])
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	key := []string{req.BuildID, vars, fmt.Sprint(req.NoHooks)}
	for _, a := range args {
		if a != sel {
			key = append(key, a)
		}
	}
	return &pyworker.Session{Key: strings.Join(key, "\x00"), Args: args, Dir: x.workDir}, nil
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
