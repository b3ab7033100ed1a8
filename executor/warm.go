package executor

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
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
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/manifest"
)

//go:embed worker.py
var workerScript []byte

// WarmConfig configures the warm-worker executor. The fields shared with
// CoreConfig mean the same.
type WarmConfig struct {
	// DBTPath locates dbt as in CoreConfig; the workers run the Python
	// interpreter next to it (a virtualenv's bin/python) unless Python is
	// set.
	DBTPath string
	// Python is the interpreter that can import dbt; see DBTPath.
	Python      string
	ProjectDir  string
	ProfilesDir string
	Target      string
	Vars        map[string]any
	Threads     int
	State       string
	Defer       bool
	DeferState  string
	FavorState  bool
	// ExtraArgs are appended to every invocation; refused arguments as in
	// CoreConfig.ExtraArgs.
	ExtraArgs []string
	Env       []string
	Logger    *slog.Logger
	WorkDir   string
	// KeepArtifacts keeps every invocation's target and log directories.
	KeepArtifacts bool
	KillGrace     time.Duration
	NoDeps        bool
	// Workers is the number of worker processes, each running one
	// invocation at a time. Zero means 1.
	//
	// DuckDB: one database file takes one writing process at a time, and
	// a worker may hold the file open between invocations, so several
	// workers on one DuckDB file fail with lock errors (reported as
	// KindConnection). Use 1 worker for DuckDB; warehouses such as
	// PostgreSQL take several.
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
// warn level; it only feeds crash reports), and within one build
// (Request.BuildID) checks that a schema exists once, as one dbt build
// does. executor/worker.py documents each.
//
// A worker runs one invocation at a time; Execute waits for an idle worker
// (or for ctx). A worker that dies is replaced and the nodes of its
// invocation are reported with KindCrash; when ctx ends during an
// invocation, that worker's process group is killed (SIGINT, then SIGKILL
// after KillGrace), the nodes are reported Cancelled, and the worker is
// replaced.
//
// Warm implements Executor, Preparer, ManifestProvider and io.Closer and is
// safe for concurrent use. Close stops every worker.
type Warm struct {
	cfg     WarmConfig
	dbt     string
	python  string
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
	ppFile   string // partial_parse.msgpack of the first parse
	manifest string // manifest.json of the first parse
	mf       *manifest.Manifest
	done     chan struct{} // closed by Close
}

var (
	_ Executor         = (*Warm)(nil)
	_ Preparer         = (*Warm)(nil)
	_ ManifestProvider = (*Warm)(nil)
	_ io.Closer        = (*Warm)(nil)
)

// NewWarm checks cfg and returns a Warm executor. Errors are as for
// NewCore. It starts no process: Prepare (or the first Execute) does.
func NewWarm(cfg WarmConfig) (*Warm, error) {
	base, err := checkCommon(cfg.ProjectDir, cfg.ExtraArgs)
	if err != nil {
		return nil, err
	}
	cfg.ProjectDir = base
	if cfg.Workers < 0 {
		return nil, &ConfigError{Field: "Workers", Value: fmt.Sprint(cfg.Workers), Reason: "negative"}
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	dbt, err := findDBT(cfg.DBTPath, cfg.ProjectDir)
	if err != nil {
		return nil, err
	}
	python := cfg.Python
	if python == "" {
		python = filepath.Join(filepath.Dir(dbt), "python")
		if _, err := os.Stat(python); err != nil {
			python = "python3"
		}
	}
	if python, err = exec.LookPath(python); err != nil {
		return nil, fmt.Errorf("executor: python for warm workers: %w", err)
	}
	wd, err := os.MkdirTemp(cfg.WorkDir, "dbtorch-warm-")
	if err != nil {
		return nil, fmt.Errorf("executor: work dir: %w", err)
	}
	script := filepath.Join(wd, "worker.py")
	if err := os.WriteFile(script, workerScript, 0o644); err != nil {
		return nil, fmt.Errorf("executor: write worker script: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Warm{
		cfg: cfg, dbt: dbt, python: python, log: log, workDir: wd, script: script,
		idle: make(chan *worker, cfg.Workers), workers: map[*worker]bool{}, done: make(chan struct{}),
	}, nil
}

// worker is one Python worker process.
type worker struct {
	id     int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	msgs   chan workerMsg // closed when the protocol pipe closes
	out    *tailBuffer
	exited chan struct{} // closed when the process has been waited for
	// err is set on a placeholder for a worker that failed to start.
	err error
}

// workerMsg is a reply of the worker.
type workerMsg struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Success bool    `json:"success"`
	Error   *string `json:"error"`
	Elapsed float64 `json:"elapsed"`
	PID     int     `json:"pid"`
}

// workerReq is a request to the worker.
type workerReq struct {
	ID        int      `json:"id"`
	Args      []string `json:"args,omitempty"`
	ParseArgs []string `json:"parse_args"`
	Key       string   `json:"key"`
	// ResultsPath is where the worker writes run_results.json.
	ResultsPath string `json:"results_path,omitempty"`
	// Build is the orchestrated build the request belongs to: the worker
	// checks each schema once per build, as one dbt build does.
	Build string `json:"build,omitempty"`
}

// kill ends the worker's process group: SIGINT, then SIGKILL after grace
// (0: at once), and waits for the process.
func (w *worker) kill(grace time.Duration) {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	pgid := w.cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		select {
		case <-w.exited:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-w.exited
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// parseArgs returns the `dbt parse` command line for the given vars
// (JSON text, "" for none), writing into dir.
func (x *Warm) parseArgs(vars, dir, pp string) []string {
	args := []string{"parse", "--project-dir", x.cfg.ProjectDir, "--no-use-colors", "--quiet"}
	if x.cfg.ProfilesDir != "" {
		args = append(args, "--profiles-dir", x.cfg.ProfilesDir)
	}
	if x.cfg.Target != "" {
		args = append(args, "--target", x.cfg.Target)
	}
	if vars != "" {
		args = append(args, "--vars", vars)
	}
	args = append(args, "--target-path", filepath.Join(dir, "target"), "--log-path", filepath.Join(dir, "logs"))
	if pp != "" {
		args = append(args, "--partial-parse-file-path", pp)
	}
	return args
}

// spawn starts a worker and waits until it has parsed the project.
func (x *Warm) spawn(ctx context.Context) (*worker, error) {
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	pp := x.ppFile
	x.mu.Unlock()

	r, wpipe, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("executor: worker pipe: %w", err)
	}
	cmd := exec.Command(x.python, "-u", x.script)
	cmd.Dir = x.cfg.ProjectDir
	env := x.cfg.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(slices.Clip(env), "DBTORCH_WORKER_FD=3", "PYTHONUNBUFFERED=1")
	cmd.ExtraFiles = []*os.File{wpipe}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &worker{id: id, cmd: cmd, out: newTail(64 << 10), msgs: make(chan workerMsg, 1), exited: make(chan struct{})}
	cmd.Stdout = w.out
	cmd.Stderr = w.out
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		r.Close()
		wpipe.Close()
		return nil, fmt.Errorf("executor: worker stdin: %w", err)
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		wpipe.Close()
		return nil, fmt.Errorf("executor: start worker: %w", err)
	}
	wpipe.Close()
	go func() {
		defer close(w.msgs)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var m workerMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				x.log.Warn("dbtorch: bad worker message", "worker", id, "err", err)
				continue
			}
			w.msgs <- m
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()

	dir := filepath.Join(x.workDir, fmt.Sprintf("worker-%d", id))
	vars, err := dbtargv.Vars(x.cfg.Vars)
	if err != nil {
		w.kill(0)
		return nil, err
	}
	if pp == "" {
		// The first worker parses alone; start it from the project's own
		// partial-parse file when there is one.
		seedPartialParse(x.cfg.ProjectDir, filepath.Join(dir, "target"), x.log)
	}
	start := time.Now()
	if err := w.send(workerReq{ID: 0, ParseArgs: x.parseArgs(vars, dir, pp), Key: vars}); err != nil {
		w.kill(0)
		return nil, fmt.Errorf("executor: worker %d: %w\n%s", id, err, w.out.Lines(tailLines))
	}
	select {
	case m, ok := <-w.msgs:
		if ok && m.Type == "ready" {
			x.log.Debug("dbtorch: worker ready", "worker", id, "pid", m.PID, "elapsed", time.Since(start))
			x.mu.Lock()
			if x.ppFile == "" {
				x.ppFile = filepath.Join(dir, "target", "partial_parse.msgpack")
				x.manifest = filepath.Join(dir, "target", "manifest.json")
			}
			x.mu.Unlock()
			return w, nil
		}
		w.kill(0)
		msg := "worker exited while starting"
		if ok && m.Error != nil {
			msg = *m.Error
		}
		return nil, fmt.Errorf("executor: worker %d: %s\n%s", id, msg, w.out.Lines(tailLines))
	case <-ctx.Done():
		w.kill(0)
		return nil, ctx.Err()
	}
}

// send writes one request line.
func (w *worker) send(req workerReq) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = w.stdin.Write(append(b, '\n'))
	return err
}

// Prepare runs `dbt deps` when needed (unless NoDeps) and starts the
// workers, returning when all of them have parsed the project. The first
// worker parses alone, starting from the project's own partial-parse file
// when an earlier dbt command left one; the others start from the first
// worker's. A failed Prepare may be retried.
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
	if !x.cfg.NoDeps && needsDeps(x.cfg.ProjectDir) {
		args := []string{"deps", "--project-dir", x.cfg.ProjectDir, "--no-use-colors"}
		if x.cfg.ProfilesDir != "" {
			args = append(args, "--profiles-dir", x.cfg.ProfilesDir)
		}
		res := runProcess(ctx, x.dbt, args, x.cfg.ProjectDir, x.cfg.Env, x.cfg.KillGrace)
		if res.err != nil {
			return fmt.Errorf("executor: dbt deps: %w\n%s", res.err, res.tail)
		}
	}
	first, err := x.spawn(ctx)
	var all []*worker
	if err == nil {
		all = append(all, first)
		type spawned struct {
			w   *worker
			err error
		}
		ch := make(chan spawned, x.cfg.Workers-1)
		for range x.cfg.Workers - 1 {
			go func() {
				w, err := x.spawn(ctx)
				ch <- spawned{w, err}
			}()
		}
		for range x.cfg.Workers - 1 {
			s := <-ch
			if s.err != nil {
				err = errors.Join(err, s.err)
			} else {
				all = append(all, s.w)
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil || x.closed {
		for _, w := range all {
			w.kill(0)
		}
		if x.closed {
			return ErrClosed
		}
		return err
	}
	for _, w := range all {
		x.workers[w] = true
		x.idle <- w
	}
	x.started = true
	return nil
}

// Manifest returns the manifest the first worker parsed (starting the
// workers if needed).
func (x *Warm) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	if err := x.Prepare(ctx); err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.mf == nil {
		m, err := manifest.Load(afero.NewOsFs(), x.manifest)
		if err != nil {
			return nil, err
		}
		x.mf = m
	}
	return x.mf, nil
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
		_ = w.stdin.Close()
		select {
		case <-w.exited:
		case <-time.After(2 * time.Second):
		}
		w.kill(0)
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
	delete(x.workers, w)
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.wg.Add(1)
	x.mu.Unlock()
	go func() {
		defer x.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-x.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		nw, err := x.spawn(ctx)
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.closed {
			if nw != nil {
				nw.kill(0)
			}
			return
		}
		if err != nil {
			x.log.Error("dbtorch: replacing a warm worker failed", "err", err)
			nw = &worker{err: err}
		} else {
			x.workers[nw] = true
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
			return x.failAll(req, nil, ctx.Err()), nil
		}
		// The project does not parse or the workers cannot start: report
		// it per node, classified from dbt's message.
		return x.failAll(req, crashFailure("dbt warm workers could not start", err.Error())), nil
	}
	set := x.cfg.settings()
	opts := set.options(req)
	args, err := dbtargv.Build(opts)
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	vars, err := dbtargv.Vars(opts.Vars)
	if err != nil {
		return nil, &ConfigError{Field: "Request.Vars", Reason: err.Error()}
	}

	var w *worker
	for w == nil {
		select {
		case w = <-x.idle:
		case <-ctx.Done():
			return x.failAll(req, nil, ctx.Err()), nil
		case <-x.done:
			return nil, ErrClosed
		}
		select {
		case <-w.exited:
			// It died while idle: replace it and take another.
			x.log.WarnContext(ctx, "dbtorch: warm worker died while idle", "worker", w.id, "exit", exitDescription(w.cmd), "output", w.out.Lines(5))
			x.retire(w)
			w = nil
		default:
		}
	}
	if w.err != nil {
		// A placeholder: the replacement could not start. Try again.
		x.retire(w)
		return x.failAll(req, crashFailure("dbt warm worker could not be started", w.err.Error())), nil
	}

	dir, err := os.MkdirTemp(x.workDir, "inv-")
	if err != nil {
		x.idle <- w
		return nil, fmt.Errorf("executor: invocation dir: %w", err)
	}
	if !x.cfg.KeepArtifacts {
		defer os.RemoveAll(dir)
	}
	targetDir, logDir := filepath.Join(dir, "target"), filepath.Join(dir, "logs")
	args = append(args, set.dirArgs(targetDir, logDir)...)
	args = append(args,
		// The worker writes run_results.json itself: dbt would also write
		// manifest.json in every invocation.
		"--no-write-json",
		// dbt's standard output only feeds crash reports (the tail of it);
		// below warn, the worker skips building the events at all.
		"--log-level", "warn")
	if x.cfg.KeepArtifacts {
		// dbt's file log keeps its debug level (--log-level would lower
		// it to warn).
		args = append(args, "--log-level-file", "debug")
	} else {
		// The log directory is removed after the invocation.
		args = append(args, "--log-level-file", "none")
	}
	args = append(args, x.cfg.ExtraArgs...)
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	pp := x.ppFile
	x.mu.Unlock()
	parseDir := filepath.Join(x.workDir, fmt.Sprintf("parse-%d", id))

	resp := &Response{Invocation: Invocation{Command: req.Command, Args: slices.Clone(args), Started: time.Now(), ExitCode: -1}}
	x.log.DebugContext(ctx, "dbt start (warm)", "worker", w.id, "command", req.Command, "nodes", len(req.Nodes), "attempt", req.Attempt, "build", req.BuildID)
	var fail *Failure
	healthy := true
	if err := w.send(workerReq{ID: id, Args: args, ParseArgs: x.parseArgs(vars, parseDir, pp), Key: vars,
		ResultsPath: filepath.Join(targetDir, "run_results.json"), Build: req.BuildID}); err != nil {
		healthy = false
		w.kill(0)
		fail = crashFailure(fmt.Sprintf("dbt warm worker %d could not take the request: %v", w.id, err), w.out.Lines(tailLines))
	} else {
	wait:
		for {
			select {
			case m, ok := <-w.msgs:
				if !ok {
					healthy = false
					w.kill(0)
					fail = crashFailure(fmt.Sprintf("dbt warm worker %d died: %s", w.id, exitDescription(w.cmd)), w.out.Lines(tailLines))
					resp.Invocation.ExitCode = w.cmd.ProcessState.ExitCode()
					break wait
				}
				if m.ID != id || m.Type != "done" {
					continue
				}
				if m.Success {
					resp.Invocation.ExitCode = 0
				} else {
					resp.Invocation.ExitCode = 1
					if m.Error != nil {
						// dbt raised instead of reporting nodes (exit 2).
						resp.Invocation.ExitCode = 2
						fail = crashFailure("dbt raised: "+*m.Error, w.out.Lines(tailLines))
					}
				}
				break wait
			case <-ctx.Done():
				healthy = false
				w.kill(x.cfg.KillGrace)
				break wait
			}
		}
	}
	resp.Invocation.Ended = time.Now()
	if !healthy {
		resp.Invocation.Stderr = w.out.Lines(tailLines)
		x.retire(w)
	} else {
		x.idle <- w
	}
	rr, invID, rrErr := readRunResults(targetDir)
	resp.Invocation.InvocationID = invID
	switch {
	case rrErr != nil && fail == nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote an unreadable run_results.json: %v", rrErr), "")
	case rr == nil && fail == nil && healthy:
		fail = crashFailure("dbt wrote no run_results.json", w.out.Lines(tailLines))
	}
	resp.Results = Complete(req.Nodes, rr, ctx.Err(), fail)
	x.log.DebugContext(ctx, "dbt done (warm)", "worker", w.id, "command", req.Command, "nodes", len(req.Nodes),
		"elapsed", resp.Invocation.Ended.Sub(resp.Invocation.Started), "invocation_id", invID)
	return resp, nil
}

// failAll reports every node of req as failed with fail, or as cancelled
// when ctxErr is given.
func (x *Warm) failAll(req Request, fail *Failure, ctxErr ...error) *Response {
	var cerr error
	if len(ctxErr) > 0 {
		cerr = ctxErr[0]
	}
	now := time.Now()
	return &Response{
		Invocation: Invocation{Command: req.Command, Started: now, Ended: now, ExitCode: -1},
		Results:    Complete(req.Nodes, nil, cerr, fail),
	}
}

// exitDescription says how a waited-for process ended.
func exitDescription(cmd *exec.Cmd) string {
	ps := cmd.ProcessState
	if ps == nil {
		return "unknown exit"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return strings.TrimSpace(fmt.Sprintf("exited with status %d", ps.ExitCode()))
}
