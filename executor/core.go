package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/manifest"
)

// CoreConfig configures the dbt Core executor. Only Project.Dir is
// required.
type CoreConfig struct {
	Options
	// CheckFiles makes every invocation re-check the project's files
	// against the partial-parse file written by Prepare (dbt's default).
	// Off by default: the project is assumed not to change during a build,
	// which saves the file scan in every invocation whose vars are the
	// executor's (a request with other vars makes dbt parse again, with
	// the scan).
	CheckFiles bool
}

// Core is the dbt Core executor: every Execute runs the dbt executable
// once, as a subprocess started without a shell, with its own target and
// log directories (so concurrent invocations never share run_results.json),
// and reads the per-node results from that run_results.json.
//
// Prepare runs `dbt deps` (when needed) and `dbt parse` once; every later
// invocation reuses the partial-parse file that parse wrote, read-only.
// Core implements Executor, Preparer, ManifestProvider, ConcurrencyLimiter,
// RelationLister, SchemaCreator, HookRunner and io.Closer and is safe for
// concurrent use.
type Core struct {
	cfg     CoreConfig // checked: Dir absolute, DBT found, defaults set
	adapter string     // the target's adapter type, "" when unknown
	log     *slog.Logger
	workDir string // our own directory under cfg.WorkDir

	mu       sync.Mutex
	closed   bool
	prepared bool
	ppFile   string       // shared partial_parse.msgpack, once prepared
	manifest lazyManifest // manifest.json written by Prepare

	hookOnce sync.Once // hookTools
	python   string    // dbt's interpreter
	script   string    // the worker script, for hooks and hook-less invocations
	hookErr  error

	noDirect atomic.Bool // dbt refused show --inline-direct (dbt-core 1.8)
}

var (
	_ Executor           = (*Core)(nil)
	_ Preparer           = (*Core)(nil)
	_ ManifestProvider   = (*Core)(nil)
	_ ConcurrencyLimiter = (*Core)(nil)
	_ io.Closer          = (*Core)(nil)
)

// NewCore checks cfg and returns a Core executor. It fails with a
// *ConfigError when Project.Dir is missing or has no dbt_project.yml, or
// when ExtraArgs holds a refused argument, and with an error wrapping
// dbt.ErrNoDBT when no dbt executable is found. It starts nothing.
func NewCore(cfg CoreConfig) (*Core, error) {
	opts, err := cfg.Options.check()
	if err != nil {
		return nil, err
	}
	cfg.Options = opts
	wd, err := os.MkdirTemp(cfg.WorkDir, "dbtorch-core-")
	if err != nil {
		return nil, fmt.Errorf("executor: work dir: %w", err)
	}
	return &Core{cfg: cfg, adapter: cfg.adapter(), log: cfg.Logger, workDir: wd}, nil
}

// MaxConcurrency implements ConcurrencyLimiter: 1 on a DuckDB target,
// otherwise no limit.
func (c *Core) MaxConcurrency() (n int, reason string) {
	if c.adapter == "duckdb" {
		return 1, duckDBReason
	}
	return 0, ""
}

// Prepare runs `dbt deps` when the project's packages are not installed
// (unless NoDeps) and `dbt parse`, once, starting from the project's own
// partial-parse file when an earlier dbt command left one (dbt re-parses
// what changed). After a successful Prepare every
// invocation reuses the partial-parse file and Manifest returns the parsed
// manifest. A failed Prepare may be retried.
func (c *Core) Prepare(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.prepared {
		return nil
	}
	deps, err := c.cfg.depsArgs()
	if err == nil && deps != nil {
		err = c.runSimple(ctx, "deps", deps)
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(c.workDir, "parse")
	target := filepath.Join(dir, "target")
	parse, err := dbtargv.Parse(c.cfg.global(c.cfg.Vars, dir))
	if err != nil {
		return err
	}
	seedPartialParse(c.cfg.Dir, target, c.log)
	if err := c.runSimple(ctx, "parse", parse); err != nil {
		return err
	}
	pp := filepath.Join(target, "partial_parse.msgpack")
	if _, err := os.Stat(pp); err != nil {
		return fmt.Errorf("executor: dbt parse wrote no partial-parse file: %w", err)
	}
	c.ppFile, c.manifest.path, c.prepared = pp, filepath.Join(target, "manifest.json"), true
	return nil
}

// seedPartialParse copies the project's own partial-parse file
// (target/partial_parse.msgpack, left by an earlier dbt command) into
// target, where the executor's first `dbt parse` looks for it: dbt then
// re-parses only what changed, as it would in the project, instead of
// parsing everything. dbt checks the file itself (dbt version, vars,
// profile, every file's checksum) and parses in full when it does not
// match, so a stale or foreign file costs nothing but the copy. Failing to
// copy is not an error.
func seedPartialParse(projectDir, target string, log *slog.Logger) {
	src := filepath.Join(projectDir, "target", "partial_parse.msgpack")
	data, err := os.ReadFile(src)
	if err != nil {
		return
	}
	err = os.MkdirAll(target, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(target, "partial_parse.msgpack"), data, 0o644)
	}
	if err != nil {
		log.Debug("dbtorch: project's partial-parse file not reused", "file", src, "err", err)
	}
}

// runSimple runs a dbt command that selects nothing (deps, parse) and
// fails with dbt's output tail on a non-zero exit.
func (c *Core) runSimple(ctx context.Context, command string, args []string) error {
	res := c.cfg.run(ctx, args)
	c.log.DebugContext(ctx, "dbt "+command, "args", args, "exit", res.ExitCode, "elapsed", res.Ended.Sub(res.Started))
	if res.Err != nil {
		return fmt.Errorf("executor: dbt %s: %w\n%s", command, res.Err, res.Tail(tailLines))
	}
	return nil
}

// Manifest returns the manifest parsed by Prepare (running Prepare first
// if needed).
func (c *Core) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	return c.manifest.load(ctx, c, &c.mu)
}

// lazyManifest is the manifest.json an executor's Prepare wrote (path),
// loaded on first use: the Manifest of Core and Warm.
type lazyManifest struct {
	path string
	m    *manifest.Manifest
}

// load runs p's Prepare, then returns the manifest at l.path, read the
// first time; mu guards l (the executor's lock: Prepare sets l.path under
// it).
func (l *lazyManifest) load(ctx context.Context, p Preparer, mu *sync.Mutex) (*manifest.Manifest, error) {
	if err := p.Prepare(ctx); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if l.m == nil {
		m, err := manifest.Load(afero.NewOsFs(), l.path)
		if err != nil {
			return nil, err
		}
		l.m = m
	}
	return l.m, nil
}

// Close removes the executor's work directory. Invocations still running
// finish; later calls return ErrClosed.
func (c *Core) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.cfg.KeepArtifacts {
		return nil
	}
	return os.RemoveAll(c.workDir)
}

// checkRequest validates a request.
func checkRequest(req *Request) error {
	if len(req.Nodes) == 0 {
		return &ConfigError{Field: "Request.Nodes", Reason: "no nodes"}
	}
	switch req.Command {
	case Run, Seed, Snapshot, Test, Build:
	default:
		return &ConfigError{Field: "Request.Command", Value: string(req.Command), Reason: "not one of run, seed, snapshot, test, build"}
	}
	seen := make(map[string]bool, len(req.Nodes))
	for _, n := range req.Nodes {
		if n == nil {
			return &ConfigError{Field: "Request.Nodes", Reason: "nil node"}
		}
		if seen[n.UniqueID] {
			return &ConfigError{Field: "Request.Nodes", Value: n.UniqueID, Reason: "node listed twice"}
		}
		seen[n.UniqueID] = true
	}
	return nil
}

// Execute runs one dbt invocation over req.Nodes and returns one Result
// per node, in request order. See the package documentation for the
// contract. Execute prepares the executor first if Prepare was not called;
// if that fails, the invocation runs without the shared partial-parse file
// and dbt reports the problem per node.
func (c *Core) Execute(ctx context.Context, req Request) (*Response, error) {
	if err := checkRequest(&req); err != nil {
		return nil, err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := c.Prepare(ctx); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		if ctx.Err() == nil {
			c.log.WarnContext(ctx, "dbtorch: prepare failed; running without a shared partial-parse file", "err", err)
		}
	}
	c.mu.Lock()
	pp := c.ppFile
	c.mu.Unlock()

	dir, done, err := c.cfg.callDir(c.workDir, "inv-", "invocation")
	if err != nil {
		return nil, err
	}
	defer done()
	opts := c.cfg.options(req, dir)
	if pp != "" {
		opts.PartialParseFile = pp
		// Skipping the file scan is only sound when dbt can reuse the
		// partial-parse file as it is: with other vars it must parse again
		// (and, without the scan, would find no files to parse).
		opts.NoFileDiff = !c.cfg.CheckFiles && sameVars(c.cfg.Vars, opts.Vars)
	}
	if !c.cfg.KeepArtifacts {
		// The log directory is removed after the invocation.
		opts.LogLevelFile = "none"
	}
	args, err := dbtargv.Build(opts)
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	args = append(args, dbtargv.ForCommand(string(req.Command), c.cfg.ExtraArgs)...)

	c.log.DebugContext(ctx, "dbt start", "command", req.Command, "nodes", len(req.Nodes), "attempt", req.Attempt, "build", req.BuildID)
	path, argv := c.cfg.DBT, args
	if req.NoHooks {
		if py, script, err := c.hookTools(); err == nil {
			// dbt's command line with the project hooks off (worker.py's
			// run_cli): the build runs them once (RunHooks).
			path, argv = py, append([]string{script, "dbt"}, args...)
		}
	}
	res := c.cfg.runPath(ctx, path, argv)
	tail := res.Tail(tailLines)
	resp := &Response{Invocation: Invocation{
		Command: req.Command, Args: slices.Clone(args), Started: res.Started, Ended: res.Ended,
		ExitCode: res.ExitCode, Stderr: tail,
	}}
	rr, invID, rrErr := readRunResults(opts.TargetPath)
	resp.Invocation.InvocationID = invID
	var fail *Failure
	switch {
	case rrErr != nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote an unreadable run_results.json (%v); %s", rrErr, res.Describe("dbt")), tail)
	case rr == nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote no run_results.json: %s", res.Describe("dbt")), tail)
	case res.ExitCode != 0 && res.ExitCode != 1:
		fail = crashFailure(fmt.Sprintf("dbt did not report the node: %s", res.Describe("dbt")), tail)
	}
	resp.Results = Complete(req.Nodes, rr, ctx.Err(), fail)
	c.log.DebugContext(ctx, "dbt done", "command", req.Command, "nodes", len(req.Nodes), "exit", res.ExitCode,
		"elapsed", res.Ended.Sub(res.Started), "invocation_id", invID)
	return resp, nil
}

// sameVars reports whether two var sets encode alike.
func sameVars(a, b dbt.Vars) bool {
	x, errA := a.JSON()
	y, errB := b.JSON()
	return errA == nil && errB == nil && x == y
}
