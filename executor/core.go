package executor

import (
	"context"
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

// CoreConfig configures the dbt Core executor. Only ProjectDir is
// required.
type CoreConfig struct {
	// DBTPath is the dbt executable. Empty: $DBTORCH_DBT, else the first
	// .venv/bin/dbt found in ProjectDir or a directory above it, else
	// "dbt" on $PATH.
	DBTPath string
	// ProjectDir is the dbt project's directory (holding dbt_project.yml).
	ProjectDir string
	// ProfilesDir is passed as --profiles-dir when set (dbt's default
	// otherwise: $DBT_PROFILES_DIR, the project dir, ~/.dbt).
	ProfilesDir string
	// Target is passed as --target when set.
	Target string
	// Vars are passed as --vars; a request's Vars are merged over them.
	Vars map[string]any
	// Threads is passed as --threads when positive. One node per
	// invocation needs one thread.
	Threads int
	// State, Defer, DeferState and FavorState map to dbt's --state,
	// --defer, --defer-state and --favor-state.
	State      string
	Defer      bool
	DeferState string
	FavorState bool
	// ExtraArgs are appended to every invocation (for example
	// "--fail-fast", "--warn-error", "--no-version-check"). Arguments
	// that select nodes or move dbt's output (--select, -s, --models, -m,
	// --exclude, --selector, --target-path, --log-path, ...) or duplicate a
	// field of this struct are refused with a *ConfigError.
	ExtraArgs []string
	// Env is dbt's environment; nil means os.Environ().
	Env []string
	// Logger receives debug records for every invocation; nil discards.
	Logger *slog.Logger
	// WorkDir holds the per-invocation target and log directories; empty
	// means os.TempDir(). They are removed after each invocation unless
	// KeepArtifacts is set.
	WorkDir       string
	KeepArtifacts bool
	// KillGrace is how long a cancelled dbt gets between SIGINT (which
	// makes dbt cancel its running queries) and SIGKILL of its whole
	// process group. Zero means 5s.
	KillGrace time.Duration
	// NoDeps disables running `dbt deps` in Prepare. By default Prepare
	// runs it when the project has packages.yml or dependencies.yml and
	// its packages are not installed yet.
	NoDeps bool
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
// Core implements Executor, Preparer, ManifestProvider and io.Closer and is
// safe for concurrent use.
type Core struct {
	cfg     CoreConfig
	dbt     string
	log     *slog.Logger
	workDir string // our own directory under cfg.WorkDir

	mu       sync.Mutex
	closed   bool
	prepared bool
	ppFile   string // shared partial_parse.msgpack, once prepared
	manifest string // manifest.json written by Prepare
	mf       *manifest.Manifest
}

var (
	_ Executor         = (*Core)(nil)
	_ Preparer         = (*Core)(nil)
	_ ManifestProvider = (*Core)(nil)
	_ io.Closer        = (*Core)(nil)
)

// NewCore checks cfg and returns a Core executor. It fails with a
// *ConfigError when ProjectDir is missing or has no dbt_project.yml, or
// when ExtraArgs holds a refused argument, and with an error when no dbt
// executable is found. It starts nothing.
func NewCore(cfg CoreConfig) (*Core, error) {
	base, err := checkCommon(cfg.ProjectDir, cfg.ExtraArgs)
	if err != nil {
		return nil, err
	}
	cfg.ProjectDir = base
	dbt, err := findDBT(cfg.DBTPath, cfg.ProjectDir)
	if err != nil {
		return nil, err
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	wd, err := os.MkdirTemp(cfg.WorkDir, "dbtorch-core-")
	if err != nil {
		return nil, fmt.Errorf("executor: work dir: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Core{cfg: cfg, dbt: dbt, log: log, workDir: wd}, nil
}

// checkCommon validates the project dir and extra args of a configuration
// and returns the project dir made absolute.
func checkCommon(projectDir string, extra []string) (string, error) {
	if projectDir == "" {
		return "", &ConfigError{Field: "ProjectDir", Reason: "required"}
	}
	abs, err := filepath.Abs(projectDir)
	if err != nil {
		return "", &ConfigError{Field: "ProjectDir", Value: projectDir, Reason: err.Error()}
	}
	if _, err := os.Stat(filepath.Join(abs, "dbt_project.yml")); err != nil {
		return "", &ConfigError{Field: "ProjectDir", Value: projectDir, Reason: "no dbt_project.yml"}
	}
	if flag, reason, ok := dbtargv.CheckExtra(extra); !ok {
		return "", &ConfigError{Field: "ExtraArgs", Value: flag, Reason: "refused: " + reason}
	}
	return abs, nil
}

// findDBT resolves the dbt executable (see CoreConfig.DBTPath).
func findDBT(path, projectDir string) (string, error) {
	if path == "" {
		path = os.Getenv("DBTORCH_DBT")
	}
	if path == "" {
		for dir := projectDir; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, ".venv", "bin", "dbt")
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if path == "" {
		path = "dbt"
	}
	found, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("executor: dbt executable: %w", err)
	}
	return found, nil
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
	if !c.cfg.NoDeps && needsDeps(c.cfg.ProjectDir) {
		if err := c.runSimple(ctx, "deps", nil); err != nil {
			return err
		}
	}
	dir := filepath.Join(c.workDir, "parse")
	target := filepath.Join(dir, "target")
	var extra []string
	if vars, err := dbtargv.Vars(c.cfg.Vars); err != nil {
		return err
	} else if vars != "" {
		extra = append(extra, "--vars", vars)
	}
	if c.cfg.Target != "" {
		extra = append(extra, "--target", c.cfg.Target)
	}
	seedPartialParse(c.cfg.ProjectDir, target, c.log)
	if err := c.runSimple(ctx, "parse", append(extra, "--target-path", target, "--log-path", filepath.Join(dir, "logs"))); err != nil {
		return err
	}
	pp := filepath.Join(target, "partial_parse.msgpack")
	if _, err := os.Stat(pp); err != nil {
		return fmt.Errorf("executor: dbt parse wrote no partial-parse file: %w", err)
	}
	c.ppFile, c.manifest, c.prepared = pp, filepath.Join(target, "manifest.json"), true
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

// needsDeps reports whether the project declares packages that are not
// installed.
func needsDeps(projectDir string) bool {
	declared := false
	for _, f := range []string{"packages.yml", "dependencies.yml"} {
		if _, err := os.Stat(filepath.Join(projectDir, f)); err == nil {
			declared = true
		}
	}
	if !declared {
		return false
	}
	entries, err := os.ReadDir(filepath.Join(projectDir, "dbt_packages"))
	return err != nil || len(entries) == 0
}

// runSimple runs a dbt command that selects nothing (deps, parse) and
// fails with dbt's output tail on a non-zero exit.
func (c *Core) runSimple(ctx context.Context, command string, extra []string) error {
	args := []string{command, "--project-dir", c.cfg.ProjectDir, "--no-use-colors"}
	if c.cfg.ProfilesDir != "" {
		args = append(args, "--profiles-dir", c.cfg.ProfilesDir)
	}
	args = append(args, extra...)
	res := runProcess(ctx, c.dbt, args, c.cfg.ProjectDir, c.cfg.Env, c.cfg.KillGrace)
	c.log.DebugContext(ctx, "dbt "+command, "args", args, "exit", res.exitCode, "elapsed", res.ended.Sub(res.started))
	if res.err != nil {
		return fmt.Errorf("executor: dbt %s: %w\n%s", command, res.err, res.tail)
	}
	return nil
}

// Manifest returns the manifest parsed by Prepare (running Prepare first
// if needed).
func (c *Core) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	if err := c.Prepare(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mf == nil {
		m, err := manifest.Load(afero.NewOsFs(), c.manifest)
		if err != nil {
			return nil, err
		}
		c.mf = m
	}
	return c.mf, nil
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

	set := c.cfg.settings()
	args, err := dbtargv.Build(set.options(req))
	if err != nil {
		return nil, &ConfigError{Field: "Request", Reason: err.Error()}
	}
	dir, err := os.MkdirTemp(c.workDir, "inv-")
	if err != nil {
		return nil, fmt.Errorf("executor: invocation dir: %w", err)
	}
	if !c.cfg.KeepArtifacts {
		defer os.RemoveAll(dir)
	}
	targetDir, logDir := filepath.Join(dir, "target"), filepath.Join(dir, "logs")
	args = append(args, set.dirArgs(targetDir, logDir)...)
	if pp != "" {
		args = append(args, "--partial-parse-file-path", pp)
		// Skipping the file scan is only sound when dbt can reuse the
		// partial-parse file as it is: with other vars it must parse again
		// (and, without the scan, would find no files to parse).
		if !c.cfg.CheckFiles && sameVars(c.cfg.Vars, dbtargv.MergeVars(c.cfg.Vars, req.Vars)) {
			args = append(args, "--no-partial-parse-file-diff")
		}
	}
	if !c.cfg.KeepArtifacts {
		// The log directory is removed after the invocation.
		args = append(args, "--log-level-file", "none")
	}
	args = append(args, c.cfg.ExtraArgs...)

	c.log.DebugContext(ctx, "dbt start", "command", req.Command, "nodes", len(req.Nodes), "attempt", req.Attempt, "build", req.BuildID)
	res := runProcess(ctx, c.dbt, args, c.cfg.ProjectDir, c.cfg.Env, c.cfg.KillGrace)
	resp := &Response{Invocation: Invocation{
		Command: req.Command, Args: slices.Clone(args), Started: res.started, Ended: res.ended,
		ExitCode: res.exitCode, Stderr: res.tail,
	}}
	rr, invID, rrErr := readRunResults(targetDir)
	resp.Invocation.InvocationID = invID
	var fail *Failure
	switch {
	case rrErr != nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote an unreadable run_results.json (%v); %s", rrErr, res.describe()), res.tail)
	case rr == nil:
		fail = crashFailure(fmt.Sprintf("dbt wrote no run_results.json: %s", res.describe()), res.tail)
	case res.exitCode != 0 && res.exitCode != 1:
		fail = crashFailure(fmt.Sprintf("dbt did not report the node: %s", res.describe()), res.tail)
	}
	resp.Results = Complete(req.Nodes, rr, ctx.Err(), fail)
	c.log.DebugContext(ctx, "dbt done", "command", req.Command, "nodes", len(req.Nodes), "exit", res.exitCode,
		"elapsed", res.ended.Sub(res.started), "invocation_id", invID)
	return resp, nil
}

// procResult is what runProcess observed.
type procResult struct {
	started, ended time.Time
	exitCode       int    // -1 when killed by a signal or not started
	signal         string // the signal that killed dbt, if any
	err            error  // non-nil unless exit 0
	tail           string // last lines of dbt's stdout and stderr
}

// describe says how the process ended.
func (r procResult) describe() string {
	switch {
	case r.signal != "":
		return "dbt was killed by signal " + r.signal
	case r.exitCode >= 0:
		return fmt.Sprintf("dbt exited with status %d", r.exitCode)
	case r.err != nil:
		return r.err.Error()
	}
	return "dbt ended"
}

// tailLines is how many lines of dbt's output a crash report keeps.
const tailLines = 40

// runProcess runs name with args in dir, in its own process group, without
// a shell. When ctx ends it sends SIGINT to the group, then SIGKILL after
// grace; once dbt has exited, whatever is left of its group is killed.
func runProcess(ctx context.Context, name string, args []string, dir string, env []string, grace time.Duration) procResult {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	out := newTail(64 << 10)
	stderr := newTail(32 << 10)
	cmd.Stdout = out
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = grace + time.Second
	res := procResult{started: time.Now(), exitCode: -1}
	if err := cmd.Start(); err != nil {
		res.ended, res.err = time.Now(), err
		res.tail = err.Error()
		return res
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		select {
		case <-exited:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(exited)
	// Leave nothing of dbt's group behind (threads' children, adapters'
	// helper processes).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	res.ended, res.err = time.Now(), err
	if ps := cmd.ProcessState; ps != nil {
		res.exitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.signal = ws.Signal().String()
		}
	}
	res.tail = joinTails(stderr.Lines(tailLines), out.Lines(tailLines))
	return res
}

// joinTails joins the stderr and stdout tails, stderr first.
func joinTails(stderr, stdout string) string {
	var parts []string
	for _, s := range []string{stderr, stdout} {
		if s = strings.TrimSpace(s); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "\n")
}

// sameVars reports whether two var sets encode alike.
func sameVars(a, b map[string]any) bool {
	x, errA := dbtargv.Vars(a)
	y, errB := dbtargv.Vars(b)
	return errA == nil && errB == nil && x == y
}
