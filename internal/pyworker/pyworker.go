// Package pyworker starts and talks to dbtorch's Python worker
// (worker.py, embedded): a long-lived Python process that imports dbt
// once, keeps the project's parsed manifests, and answers requests over
// one protocol (worker.py's docstring): dbt invocations for the warm
// executor and `dbt ls` selections for the selector's session. It is the
// one Go launcher of that worker; processes are started and stopped by
// internal/proc.
package pyworker

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
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/internal/proc"
	"github.com/dbtorch/dbtorch/internal/runresults"
)

//go:embed worker.py
var script []byte

// WriteScript writes worker.py into dir and returns its path.
func WriteScript(dir string) (string, error) {
	path := filepath.Join(dir, "worker.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		return "", fmt.Errorf("pyworker: write worker script: %w", err)
	}
	return path, nil
}

// Config says how to start a worker.
type Config struct {
	// Python is the interpreter that imports dbt; Script is worker.py's
	// path (WriteScript).
	Python, Script string
	// Dir is the working directory (the dbt project); Env the environment
	// (nil: os.Environ()).
	Dir string
	Env []string
	// Unpatched runs the worker without its patches of dbt internals
	// ($DBTORCH_WORKER_PATCHES=off); the environment can also say so.
	Unpatched bool
	// Logger gets a warning for each message that is not the protocol's;
	// nil discards.
	Logger *slog.Logger
}

// Request is one request to the worker; see worker.py for the meaning of
// each field.
type Request struct {
	ID   int    `json:"id"`
	Type string `json:"type"`
	// Args is a dbt command line without the executable (invoke, ls).
	Args []string `json:"args,omitempty"`
	// DepsArgs is a `dbt deps` run before the first parse (start).
	DepsArgs []string `json:"deps_args,omitempty"`
	// ParseArgs is the `dbt parse` whose manifest Args run against; Key
	// names that manifest (the vars).
	ParseArgs []string `json:"parse_args"`
	Key       string   `json:"key"`
	// ResultsPath is where the worker writes run_results.json (invoke).
	ResultsPath string `json:"results_path,omitempty"`
	// Build is the orchestrated build the request belongs to (invoke,
	// hooks).
	Build string `json:"build,omitempty"`
	// NoHooks runs the invocation without the project's on-run-start and
	// on-run-end hooks (invoke).
	NoHooks bool `json:"no_hooks,omitempty"`
	// Phase is the hooks to run, "on-run-start" or "on-run-end"; Nodes
	// the build's unique_ids (on-run-start creates their schemas first);
	// Results the build's results, dbt's `results` of on-run-end (hooks).
	Phase   string              `json:"phase,omitempty"`
	Nodes   []string            `json:"nodes,omitempty"`
	Results []runresults.Result `json:"results,omitempty"`
	// Sole says the worker is its executor's only one (invoke): nothing
	// else of the build runs dbt while it waits, so it may keep dbt's
	// relation cache from one invocation of the build to the next.
	Sole bool `json:"sole,omitempty"`
	// Session, with the invocation's unique_ids in Nodes, runs its nodes
	// in the worker's build session when it has one (Reply.Session): one
	// long-lived `dbt build` task that runs nodes as they are requested,
	// several at once, and answers a request when all its nodes have
	// ended, with one run_results.json (invoke).
	Session *Session `json:"session,omitempty"`
}

// Session names and starts a worker's build session (worker.py, Session).
type Session struct {
	// Key names the session: requests with the same key run in the same
	// session; another key ends it first.
	Key string `json:"key"`
	// Args is the `dbt build` command line that starts the session,
	// selecting the request's first node, without --target-path and
	// --log-path; its --threads is how many nodes the session runs at
	// once.
	Args []string `json:"args"`
	// Dir is where the worker makes the session's directories.
	Dir string `json:"dir"`
}

// Request types.
const (
	Start  = "start"
	Invoke = "invoke"
	Ls     = "ls"
	// Show runs a dbt show whose rows come back in Reply.Rows.
	Show = "show"
	// Hooks runs one phase of the project's hooks.
	Hooks = "hooks"
)

// Reply is one reply of the worker.
type Reply struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Success bool     `json:"success"`
	Error   *string  `json:"error"`
	Elapsed float64  `json:"elapsed"`
	PID     int      `json:"pid"`
	IDs     []string `json:"ids"`
	// RunResults is the run_results.json of a request run in the build
	// session, when the worker sends it in the reply; it then writes no
	// file at ResultsPath (invoke).
	RunResults string `json:"run_results"`
	// Rows are a Show's rows, each value as text ("" for null).
	Rows [][]string `json:"rows"`
	// Patches names the patches of dbt internals the worker applied
	// (ready); Enabled those enabled on its dbt-core version, a superset.
	Patches []string `json:"patches"`
	Enabled []string `json:"enabled"`
	// Hooks says (ready) whether the worker can run invocations without
	// the project's hooks; Unsupported (hooks) that it cannot run them
	// apart.
	Hooks       bool `json:"hooks"`
	Unsupported bool `json:"unsupported"`
	// Session says (ready) whether the worker runs build sessions
	// (Request.Session): requests may then overlap.
	Session bool `json:"session"`
	// Warmed says (a zygote's ready) that the zygote ran the `dbt ls`
	// that builds, before any fork, what every worker's first invocation
	// would otherwise build for itself (worker.py, warm_forks).
	Warmed bool `json:"warmed"`
	// Code is a forked worker's exit status, or minus the signal that
	// killed it (a zygote's "exited", PID the worker's).
	Code int `json:"code"`
}

// ErrExited is wrapped by Call's error when the worker ended before
// replying.
var ErrExited = errors.New("pyworker: worker exited")

// Worker is a running worker. Calls may overlap (the worker answers
// each by its id); the worker runs them one at a time except the nodes of
// its build session (Request.Session).
type Worker struct {
	p     process
	ready Reply

	wmu sync.Mutex // serialises writes to the worker's input

	mu      sync.Mutex
	pending map[int]chan Reply // closed when the reply pipe closes
	ended   bool               // the reply pipe closed

	// event, when set (a zygote), gets every "exited" message and, with
	// a zero Reply, the end of the reply pipe.
	event func(Reply)
}

// process is a worker's process: started by Launch (*proc.Process) or
// forked by a Zygote (*proc.Forked).
type process interface {
	Pid() int
	Stdin() io.WriteCloser
	Done() <-chan struct{}
	Wait() proc.Result
	Tail(n int) string
	Stop(grace time.Duration) proc.Result
}

// Launch starts a worker and sends it start (Type Start is set), returning
// once the worker has parsed the project, or an error with the worker's
// output. When ctx ends first, the worker is killed.
func Launch(ctx context.Context, cfg Config, start Request) (*Worker, error) {
	return launch(ctx, cfg, start, nil, nil)
}

// launch is Launch; with ctl set the worker is a zygote whose socket end
// is ctl (its fd 4) and event gets its "exited" messages.
func launch(ctx context.Context, cfg Config, start Request, ctl *os.File, event func(Reply)) (*Worker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, wpipe, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pyworker: pipe: %w", err)
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(slices.Clip(env), "DBTORCH_WORKER_FD=3", "PYTHONUNBUFFERED=1")
	if cfg.Unpatched {
		env = append(env, "DBTORCH_WORKER_PATCHES=off")
	}
	files := []*os.File{wpipe}
	if ctl != nil {
		files = append(files, ctl)
		env = append(env, "DBTORCH_ZYGOTE_FD=4")
	}
	p, err := proc.Start(proc.Spec{Path: cfg.Python, Args: []string{"-u", cfg.Script}, Dir: cfg.Dir, Env: env,
		Stdin: true, ExtraFiles: files})
	wpipe.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("pyworker: %w", err)
	}
	w := &Worker{p: p, pending: map[int]chan Reply{}, event: event}
	go w.read(r, log)
	start.Type = Start
	m, err := w.Call(ctx, start, 0)
	if err != nil {
		w.p.Stop(0)
		return nil, fmt.Errorf("pyworker: worker did not start: %w\n%s", err, w.Tail(40))
	}
	if m.Type != "ready" {
		w.p.Stop(0)
		msg := "not ready"
		if m.Error != nil {
			msg = *m.Error
		}
		return nil, fmt.Errorf("pyworker: worker did not start: %s\n%s", msg, w.Tail(40))
	}
	w.ready = m
	return w, nil
}

// read hands each reply to the call waiting for its id, until the reply
// pipe closes; then every waiting call learns that the worker ended.
func (w *Worker) read(r *os.File, log *slog.Logger) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m Reply
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			log.Warn("dbtorch: bad worker message", "pid", w.p.Pid(), "err", err)
			continue
		}
		if m.Type == "" {
			continue
		}
		if m.Type == "exited" {
			if w.event != nil {
				w.event(m)
			}
			continue
		}
		w.mu.Lock()
		ch := w.pending[m.ID]
		delete(w.pending, m.ID)
		w.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	w.mu.Lock()
	w.ended = true
	for id, ch := range w.pending {
		close(ch)
		delete(w.pending, id)
	}
	w.mu.Unlock()
	if w.event != nil {
		w.event(Reply{})
	}
}

// send writes one request line.
func (w *Worker) send(req Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("pyworker: %w", err)
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if _, err := w.p.Stdin().Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%w: it could not take the request: %v", ErrExited, err)
	}
	return nil
}

// Cancel is the request type that cancels another request (its ID).
const Cancel = "cancel"

// Call sends req and waits for the worker's reply to it. Request ids must
// be unique among overlapping calls. When ctx ends first: a request of
// the worker's build session (req.Session set, on a worker whose ready
// reply says Session) is cancelled in the worker, which has grace to
// answer before it is killed (SIGKILL of its process group); any other
// request stops the worker (SIGINT, then SIGKILL after grace). Either way
// ctx's error is returned; Alive tells whether the worker is still there.
// When the worker ends first, the error wraps ErrExited. After any other
// error the worker is gone. With an error the Reply is always empty.
func (w *Worker) Call(ctx context.Context, req Request, grace time.Duration) (Reply, error) {
	ch, err := w.post(req)
	if err != nil {
		return Reply{}, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			res := w.p.Stop(0)
			return Reply{}, fmt.Errorf("%w: %s", ErrExited, res.Describe("worker"))
		}
		return m, nil
	case <-ctx.Done():
	}
	if req.Session == nil || !w.ready.Session {
		w.p.Stop(grace)
		return Reply{}, ctx.Err()
	}
	if err := w.send(Request{ID: req.ID, Type: Cancel}); err != nil {
		w.p.Stop(0)
		return Reply{}, ctx.Err()
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case _, ok := <-ch: // answered: what dbt reported no longer matters
		if !ok {
			w.p.Stop(0) // it ended: wait for the process
		}
	case <-t.C:
		w.p.Stop(0)
	}
	return Reply{}, ctx.Err()
}

// post sends req (an invoke when its Type is empty) and returns the
// channel its reply comes on, closed instead when the worker ends first.
// An error wraps ErrExited when the worker has ended, or is the write's
// (the worker is then stopped).
func (w *Worker) post(req Request) (chan Reply, error) {
	if req.Type == "" {
		req.Type = Invoke
	}
	ch := make(chan Reply, 1)
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		res := w.p.Stop(0)
		return nil, fmt.Errorf("%w: %s", ErrExited, res.Describe("worker"))
	}
	w.pending[req.ID] = ch
	w.mu.Unlock()
	if err := w.send(req); err != nil {
		w.p.Stop(0)
		return nil, err
	}
	return ch, nil
}

// Alive reports whether the worker process is still running.
func (w *Worker) Alive() bool {
	select {
	case <-w.p.Done():
		return false
	default:
		return true
	}
}

// Ready returns the worker's ready reply (its pid, start-up time, the
// patches enabled on its dbt-core version and those it applied).
func (w *Worker) Ready() Reply { return w.ready }

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.p.Pid() }

// Done is closed when the worker process has exited.
func (w *Worker) Done() <-chan struct{} { return w.p.Done() }

// Result returns how the worker ended; it waits for the end.
func (w *Worker) Result() proc.Result { return w.p.Wait() }

// Tail returns the last n lines of the worker's output (dbt's logging).
func (w *Worker) Tail(n int) string { return w.p.Tail(n) }

// Kill stops the worker at once and waits for it.
func (w *Worker) Kill() { w.p.Stop(0) }

// Close ends the worker's input (the worker exits), waits up to wait for
// it and then kills it.
func (w *Worker) Close(wait time.Duration) proc.Result {
	_ = w.p.Stdin().Close()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.p.Done():
	case <-t.C:
	}
	return w.p.Stop(0)
}
