package executor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/pyworker"
	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// HookPhase names one phase of a dbt project's run hooks.
type HookPhase string

// The project hooks dbt runs around the nodes of a run, build, seed,
// snapshot or test.
const (
	OnRunStart HookPhase = "on-run-start"
	OnRunEnd   HookPhase = "on-run-end"
)

// HookRequest asks for one phase of the project's hooks (every package's
// on-run-start or on-run-end, in dbt's order).
type HookRequest struct {
	Phase HookPhase
	// Nodes are the build's planned nodes. Before on-run-start, the
	// schemas they write to are created and dbt's relation cache filled
	// for them, as dbt build's before_run does.
	Nodes []*manifest.Node
	// Results are what on-run-end sees as dbt's `results`: one per node
	// of the build, DBTStatus holding dbt's status word ("success",
	// "pass", "error", "skipped", ...). Results of nodes the project does
	// not know are left out.
	Results []Result
	// Vars are merged over the executor's vars, as a Request's are.
	Vars dbt.Vars
	// BuildID is the build the hooks belong to (Request.BuildID).
	BuildID string
	// FullRefresh makes the hooks see --full-refresh (flags.FULL_REFRESH).
	FullRefresh bool
}

// HookRunner is an optional capability of an Executor: it runs the
// project's on-run-start or on-run-end hooks on their own, and its Execute
// runs requests with NoHooks set without them. An orchestrator that finds
// it runs on-run-start once before a build's first node and on-run-end
// once after its last, and every invocation of the build with NoHooks, as
// `dbt build` runs each hook once.
//
// RunHooks runs every hook of req.Phase through dbt's own hook machinery
// (compiled with dbt's context: on-run-end gets `results`, `schemas` and
// `database_schemas` from req.Results, as dbt's after_run builds them) and
// returns the hooks' results in the order dbt ran them: one per hook
// (unique_id "operation.<package>.<package>-on-run-start-<n>"), Success,
// or Error with dbt's message, those after a failed hook Skipped. When the
// project has no hooks of the phase there are none. A non-nil error means
// the hooks could not be run: it wraps ErrHooksUnsupported when this
// executor cannot run them apart on this dbt (nothing ran; invocations
// then run their hooks as dbt does, whatever NoHooks says), ctx's error
// when ctx ended, or says why dbt failed (a hook that does not compile).
// RunHooks is safe for concurrent use.
//
// Core runs each phase in one Python process with dbt imported (the warm
// worker's script, run once); Warm on an idle worker. Both run node
// invocations with NoHooks through the worker script with dbt's hook
// lookup switched off (internal/pyworker/worker.py,
// suppress_project_hooks), a switch that is not one of the worker's
// optional patches: DBTORCH_WORKER_PATCHES=off leaves it on. The dbt
// Cloud executor does not implement HookRunner: a dbt Cloud job runs its
// own hooks.
type HookRunner interface {
	RunHooks(ctx context.Context, req HookRequest) (*Response, error)
}

// ErrHooksUnsupported is wrapped by RunHooks' error when the executor
// cannot run the project's hooks apart from its invocations on this dbt
// (a dbt whose internals differ from those the worker's hook code was
// written for, or a dbt executable whose Python cannot be found or cannot
// run the worker script).
var ErrHooksUnsupported = errors.New("executor: project hooks cannot be run apart from the node invocations")

var (
	_ HookRunner = (*Core)(nil)
	_ HookRunner = (*Warm)(nil)
)

func checkHookRequest(req HookRequest) error {
	if req.Phase != OnRunStart && req.Phase != OnRunEnd {
		return &ConfigError{Field: "HookRequest.Phase", Value: string(req.Phase), Reason: "not on-run-start or on-run-end"}
	}
	return nil
}

// hookCall is one phase of hooks run on worker pw: the request it sends
// and where the hooks' results are written.
type hookCall struct {
	id        int
	req       HookRequest
	args      []string // dbt build's command line (dbtargv.Hooks)
	parse     []string // the parse whose manifest args run against
	key       string   // the vars, naming that manifest
	targetDir string   // where the worker writes run_results.json
}

// prepareHookCall is what Core's and Warm's RunHooks do before they run
// req: Prepare p, make the call's directory under workDir (removed by
// done unless opts.KeepArtifacts) and build the call there; state returns
// the call's id and Prepare's partial-parse file. On error nothing is left
// to clean up.
func prepareHookCall(ctx context.Context, p Preparer, opts Options, workDir string, req HookRequest,
	state func() (id int, pp string)) (call *hookCall, done func(), err error) {
	if err := p.Prepare(ctx); err != nil {
		return nil, nil, err
	}
	dir, done, err := opts.callDir(workDir, "hooks-", "hooks")
	if err != nil {
		return nil, nil, err
	}
	id, pp := state()
	call, err = newHookCall(opts, req, id, dir, pp)
	if err != nil {
		done()
		return nil, nil, err
	}
	return call, done, nil
}

// newHookCall prepares req's call on a worker of opts, in dir, reusing the
// partial-parse file pp.
func newHookCall(opts Options, req HookRequest, id int, dir, pp string) (*hookCall, error) {
	vars := opts.Vars.Merge(req.Vars)
	key, err := vars.JSON()
	if err != nil {
		return nil, &ConfigError{Field: "HookRequest.Vars", Reason: err.Error()}
	}
	g := opts.global(vars, dir)
	g.Quiet, g.PartialParseFile = true, pp
	parse, err := dbtargv.Parse(g)
	if err != nil {
		return nil, err
	}
	o := opts.options(Request{Command: Build, FullRefresh: req.FullRefresh, Vars: req.Vars}, dir)
	o.NoWriteJSON, o.LogLevel = true, "warn"
	args, err := dbtargv.Hooks(o)
	if err != nil {
		return nil, &ConfigError{Field: "HookRequest", Reason: err.Error()}
	}
	args = append(args, dbtargv.ForCommand(string(Build), opts.ExtraArgs)...)
	return &hookCall{id: id, req: req, args: args, parse: parse, key: key, targetDir: filepath.Join(dir, "target")}, nil
}

// run sends the call to pw and reads the hooks' results. It returns
// worker errors (pw is then gone) apart from dbt's: healthy is false when
// pw must be retired.
func (h *hookCall) run(ctx context.Context, pw *pyworker.Worker, grace time.Duration) (resp *Response, healthy bool, err error) {
	if !pw.Ready().Hooks {
		return nil, true, fmt.Errorf("%w: this dbt's hooks cannot be switched off in node invocations", ErrHooksUnsupported)
	}
	preq := pyworker.Request{ID: h.id, Type: pyworker.Hooks, Args: h.args, ParseArgs: h.parse, Key: h.key,
		ResultsPath: filepath.Join(h.targetDir, "run_results.json"), Build: h.req.BuildID, Phase: string(h.req.Phase)}
	for _, n := range h.req.Nodes {
		preq.Nodes = append(preq.Nodes, n.UniqueID)
	}
	for _, r := range h.req.Results {
		preq.Results = append(preq.Results, entryOf(&r))
	}
	resp = &Response{Invocation: Invocation{Command: Build, Args: slices.Clone(h.args), Started: time.Now(), ExitCode: -1}}
	m, err := pw.Call(ctx, preq, grace)
	resp.Invocation.Ended = time.Now()
	if err != nil {
		resp.Invocation.Stderr = pw.Tail(tailLines)
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, fmt.Errorf("executor: %s hooks: worker died: %w\n%s", h.req.Phase, err, resp.Invocation.Stderr)
	}
	if m.Unsupported {
		return nil, true, fmt.Errorf("%w: %s", ErrHooksUnsupported, deref(m.Error))
	}
	rs, invID, rrErr := readRunResults(h.targetDir)
	resp.Invocation.InvocationID = invID
	resp.Results = rs
	switch {
	case m.Error != nil:
		resp.Invocation.ExitCode = 2
		return resp, true, fmt.Errorf("executor: %s hooks: dbt raised: %s", h.req.Phase, *m.Error)
	case rrErr != nil:
		return resp, true, fmt.Errorf("executor: %s hooks: unreadable run_results.json: %w", h.req.Phase, rrErr)
	case m.Success:
		resp.Invocation.ExitCode = 0
	default:
		resp.Invocation.ExitCode = 1
	}
	return resp, true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// entryOf is r as a run_results.json entry (what resultOf reads back).
func entryOf(r *Result) runresults.Result {
	e := runresults.Result{
		Status: r.DBTStatus, ThreadID: r.ThreadID, ExecutionTime: r.ExecutionTime.Seconds(),
		AdapterResponse: r.AdapterResponse, Failures: r.Failures, UniqueID: r.UniqueID,
		Timing: []runresults.Timing{},
	}
	if e.AdapterResponse == nil {
		e.AdapterResponse = map[string]any{}
	}
	if e.Status == "" {
		e.Status = string(r.Status)
	}
	for p, v := range map[**string]string{&e.Message: r.Message, &e.CompiledCode: r.CompiledCode, &e.RelationName: r.RelationName} {
		if v != "" {
			*p = &v
		}
	}
	for _, t := range r.Timing {
		e.Timing = append(e.Timing, runresults.NewTiming(t.Name, t.StartedAt, t.CompletedAt))
	}
	return e
}

// RunHooks implements HookRunner: one Python process with dbt imported
// (the warm worker's script) parses the project from Prepare's
// partial-parse file and runs req.Phase's hooks.
func (c *Core) RunHooks(ctx context.Context, req HookRequest) (*Response, error) {
	if err := checkHookRequest(req); err != nil {
		return nil, err
	}
	py, script, err := c.hookTools()
	if err != nil {
		return nil, err
	}
	call, done, err := prepareHookCall(ctx, c, c.cfg.Options, c.workDir, req, func() (int, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return 1, c.ppFile
	})
	if err != nil {
		return nil, err
	}
	defer done()
	pw, err := pyworker.Launch(ctx, pyworker.Config{Python: py, Script: script, Dir: c.cfg.Dir, Env: c.cfg.Env, Logger: c.log},
		pyworker.Request{ParseArgs: call.parse, Key: call.key})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case req.Phase == OnRunStart:
		// Prepare parsed the project with dbt: the interpreter found
		// beside the dbt executable (a wrapper script, say) cannot run it.
		// Nothing ran; the invocations run the hooks, as dbt does.
		return nil, fmt.Errorf("%w: the worker script does not start with %s: %v", ErrHooksUnsupported, py, err)
	default:
		return nil, fmt.Errorf("executor: %s hooks: %w", req.Phase, err)
	}
	defer pw.Close(2 * time.Second)
	resp, _, err := call.run(ctx, pw, c.cfg.KillGrace)
	return resp, err
}

// hookTools returns the Python interpreter of the dbt executable and the
// worker script Core runs hooks and hook-less invocations with, found and
// written once; an error wraps ErrHooksUnsupported.
func (c *Core) hookTools() (python, script string, err error) {
	c.hookOnce.Do(func() {
		c.python, c.hookErr = dbt.Interpreter(c.cfg.DBT)
		if c.hookErr == nil {
			c.script, c.hookErr = pyworker.WriteScript(c.workDir)
		}
		if c.hookErr != nil {
			c.hookErr = fmt.Errorf("%w: %v", ErrHooksUnsupported, c.hookErr)
		}
	})
	return c.python, c.script, c.hookErr
}

// RunHooks implements HookRunner on an idle worker.
func (x *Warm) RunHooks(ctx context.Context, req HookRequest) (*Response, error) {
	if err := checkHookRequest(req); err != nil {
		return nil, err
	}
	call, done, err := prepareHookCall(ctx, x, x.cfg.Options, x.workDir, req, func() (int, string) {
		x.mu.Lock()
		defer x.mu.Unlock()
		x.nextID++
		return x.nextID, x.ppFile
	})
	if err != nil {
		return nil, err
	}
	defer done()
	w, err := x.takeIdle(ctx)
	if err != nil {
		return nil, err
	}
	resp, healthy, err := call.run(ctx, w.pw, x.cfg.KillGrace)
	if healthy {
		x.release(w)
	} else {
		x.retire(w)
	}
	return resp, err
}
