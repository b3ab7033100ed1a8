package executor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/proc"
)

// Options are what the two local executors, Core and Warm, share: the
// project dbt runs in and the flags and housekeeping of every invocation.
// Only Project.Dir is required.
type Options struct {
	// Project is the dbt project: the executable (found by dbt.FindDBT
	// when DBT is empty: $DBTORCH_DBT, else a .venv/bin/dbt in the
	// project's directory or above it, else "dbt" on $PATH), the project
	// and profiles directories, the target, the vars (a request's Vars
	// are merged over them) and dbt's environment.
	dbt.Project
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
	// "--fail-fast", "--warn-error", "--no-version-check"), except the
	// flags only some dbt commands take, which reach only those:
	// --empty (run, build, snapshot), --sample, --event-time-start and
	// --event-time-end (run, build), --store-failures (build, test). Arguments
	// that select nodes or move dbt's output (--select, -s, --models, -m,
	// --exclude, --selector, --target-path, --log-path, ...) or duplicate a
	// field of Options are refused with a *ConfigError.
	ExtraArgs []string
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
}

// check validates o and returns it with defaults filled in: Dir made
// absolute, dbt found, KillGrace set, a discarding Logger when nil, and
// the dbt executable found.
func (o Options) check() (Options, error) {
	if o.Dir == "" {
		return o, &ConfigError{Field: "Project.Dir", Reason: "required"}
	}
	abs, err := o.AbsDir()
	if err != nil {
		return o, &ConfigError{Field: "Project.Dir", Value: o.Dir, Reason: err.Error()}
	}
	if err := o.Project.Check(); err != nil {
		return o, &ConfigError{Field: "Project.Dir", Value: o.Dir, Reason: "no dbt_project.yml"}
	}
	o.Dir = abs
	if flag, reason, ok := dbtargv.CheckExtra(o.ExtraArgs); !ok {
		return o, &ConfigError{Field: "ExtraArgs", Value: flag, Reason: "refused: " + reason}
	}
	if o.DBT, err = o.Executable(); err != nil {
		return o, fmt.Errorf("executor: %w", err)
	}
	if o.KillGrace <= 0 {
		o.KillGrace = proc.DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// adapter returns the type of the project's target ("duckdb",
// "postgres", ...) as its profile says, or "" when the profile cannot be
// read (dbt will say why when it runs).
func (o Options) adapter() string {
	prof, err := o.Profile()
	if err != nil {
		o.Logger.Debug("dbtorch: the project's profile was not read; no concurrency limit known", "err", err)
		return ""
	}
	return prof.Adapter
}

// tailLines is how many lines of dbt's output a crash report keeps.
const tailLines = 40

// global returns the Global flags of an invocation with vars, writing
// into dir's target and logs subdirectories (dbt's defaults when dir is
// empty).
func (o Options) global(vars dbt.Vars, dir string) dbtargv.Global {
	p := o.Project
	p.Vars = vars
	if dir == "" {
		return dbtargv.Local(p, "", "")
	}
	return dbtargv.Local(p, filepath.Join(dir, "target"), filepath.Join(dir, "logs"))
}

// options returns the dbtargv options of req run in dir: its command and
// nodes, the request's vars merged over the executor's, and the
// executor's target, threads and state. dbt's relation cache is filled for
// the schemas of the invocation's nodes only (--cache-selected-only), and
// `dbt test` runs without filling it (see
// dbtargv.Options.TestsWithoutRelationCache).
func (o Options) options(req Request, dir string) dbtargv.Options {
	g := o.global(o.Vars.Merge(req.Vars), dir)
	g.CacheSelectedOnly = true
	return dbtargv.Options{
		Command: string(req.Command), Nodes: req.Nodes, FullRefresh: req.FullRefresh,
		Global: g, Threads: o.Threads,
		State: o.State, Defer: o.Defer, DeferState: o.DeferState, FavorState: o.FavorState,
		Empty: req.Empty, Sample: req.Sample, EventTimeStart: eventTime(req.EventTimeStart), EventTimeEnd: eventTime(req.EventTimeEnd),
		TestsWithoutRelationCache: true,
	}
}

// depsArgs returns the `dbt deps` command line when the project declares
// packages that are not installed (and NoDeps is off), else nil.
func (o Options) depsArgs() ([]string, error) {
	if o.NoDeps || !needsDeps(o.Dir) {
		return nil, nil
	}
	return dbtargv.Deps(o.global(o.Vars, ""))
}

// run runs dbt with args in the project directory, stopped by KillGrace's
// rule when ctx ends.
func (o Options) run(ctx context.Context, args []string) proc.Result {
	return o.runPath(ctx, o.DBT, args)
}

// runPath is run with another executable at path (dbt's interpreter).
func (o Options) runPath(ctx context.Context, path string, args []string) proc.Result {
	return proc.Run(ctx, proc.Spec{Path: path, Args: args, Dir: o.Dir, Env: o.Env, Grace: o.KillGrace})
}

// callDir makes the directory of one call (an invocation, a phase of
// hooks) under workDir, named prefix*; done removes it unless
// KeepArtifacts. what names the call in the error.
func (o Options) callDir(workDir, prefix, what string) (dir string, done func(), err error) {
	dir, err = os.MkdirTemp(workDir, prefix)
	if err != nil {
		return "", nil, fmt.Errorf("executor: %s dir: %w", what, err)
	}
	return dir, func() {
		if !o.KeepArtifacts {
			os.RemoveAll(dir)
		}
	}, nil
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

// eventTime formats t as dbt's --event-time-start and --event-time-end
// take it (click.DateTime: "2006-01-02T15:04:05", in UTC), "" for the
// zero time.
func eventTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05")
}
