package selector

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/proc"
	"github.com/dbtorch/dbtorch/internal/pyworker"
)

// DBTLs resolves selections by asking dbt: `dbt ls --output json
// --output-keys unique_id` in the project directory. It is the reference
// the Native resolver is tested against, for users who want dbt's own word.
// Each Resolve starts one dbt process (seconds); Start returns a Session that
// answers many selections from one Python process that parses the project
// once.
//
// The fields must not change while a call is running. Concurrent calls are
// safe: every invocation gets its own target and log directories.
type DBTLs struct {
	// Project is the dbt project: the executable (dbt.FindDBT's rule when
	// Project.DBT is empty), the project directory, and the profiles
	// directory, target and vars passed as --profiles-dir, --target and
	// --vars when set, and dbt's environment (nil: os.Environ()).
	dbt.Project
	// Python is the interpreter that has dbt installed, for Start; empty
	// means the one the dbt script runs (dbt.Interpreter).
	Python string
}

// NewDBTLs returns a resolver that runs the dbt executable at dbt in
// projectDir.
func NewDBTLs(dbtPath, projectDir string) *DBTLs {
	return &DBTLs{Project: dbt.Project{DBT: dbtPath, Dir: projectDir}}
}

var _ Resolver = (*DBTLs)(nil)

// DBTError reports a dbt invocation that failed: dbt rejected the
// selection or could not run.
type DBTError struct {
	Args   []string
	Output string // dbt's standard output and error, trimmed
	Err    error  // the exit error, if any
}

func (e *DBTError) Error() string {
	msg := e.Output
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	return fmt.Sprintf("selector: dbt %s: %v: %s", strings.Join(e.Args, " "), e.Err, msg)
}

func (e *DBTError) Unwrap() error { return e.Err }

// args returns the selection flags of opts for dbt ls.
func (d *DBTLs) args(opts Options) ([]string, error) {
	if opts.StatePath == "" && (opts.State != nil || opts.RunResults != nil || opts.Sources != nil) {
		return nil, errors.New("selector: DBTLs needs Options.StatePath (a directory) for state, result and source_status selection")
	}
	if opts.ExcludeEmpty {
		return nil, errors.New("selector: dbt ls always lists empty nodes; DBTLs does not support ExcludeEmpty")
	}
	var a []string
	for _, s := range opts.Select {
		a = append(a, "--select", s)
	}
	for _, s := range opts.Exclude {
		a = append(a, "--exclude", s)
	}
	if opts.Selector != "" {
		a = append(a, "--selector", opts.Selector)
	}
	if opts.Indirect != "" {
		a = append(a, "--indirect-selection", string(opts.Indirect))
	}
	for _, t := range opts.ResourceTypes {
		a = append(a, "--resource-type", string(t))
	}
	for _, t := range opts.ExcludeResourceTypes {
		a = append(a, "--exclude-resource-type", string(t))
	}
	if opts.StatePath != "" {
		a = append(a, "--state", opts.StatePath)
	}
	return a, nil
}

// global returns the Global flags of a dbt invocation writing into tmp's
// target and logs directories, quiet (dbt ls prints only its answer).
func (d *DBTLs) global(tmp string) dbtargv.Global {
	g := dbtargv.Local(d.Project, filepath.Join(tmp, "target"), filepath.Join(tmp, "logs"))
	g.Quiet = true
	return g
}

// env returns dbt's environment, without anonymous usage statistics.
func (d *DBTLs) env() []string {
	return append(d.Environ(), "DBT_SEND_ANONYMOUS_USAGE_STATS=false", "DO_NOT_TRACK=1")
}

// Resolve implements Resolver with one `dbt ls` process.
func (d *DBTLs) Resolve(ctx context.Context, opts Options) ([]string, error) {
	sel, err := d.args(opts)
	if err != nil {
		return nil, err
	}
	dbtPath, err := d.Executable()
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	tmp, err := os.MkdirTemp("", "dbtorch-ls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args, err := dbtargv.Ls(d.global(tmp), sel)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	var stdout bytes.Buffer
	res := proc.Run(ctx, proc.Spec{Path: dbtPath, Args: args, Dir: d.Dir, Env: d.env(), Stdout: &stdout})
	if res.Err != nil {
		return nil, &DBTError{Args: args, Output: strings.TrimSpace(res.Tail(200)), Err: res.Err}
	}
	ids := []string{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var row struct {
			UniqueID string `json:"unique_id"`
		}
		if json.Unmarshal(line, &row) == nil && row.UniqueID != "" {
			ids = append(ids, row.UniqueID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Session is a long-lived Python process that has parsed the project once
// and answers selections through dbt's programmatic runner (about 0.1 s per
// selection on a small project instead of seconds for a new `dbt ls`): the
// warm executor's worker (internal/pyworker), asked `ls` requests. It
// implements Resolver; calls are serialized. Close it when done.
type Session struct {
	d     *DBTLs
	tmp   string
	g     dbtargv.Global
	parse []string
	key   string

	mu     sync.Mutex
	w      *pyworker.Worker
	nextID int
	dead   error
}

var _ Resolver = (*Session)(nil)

// sessionGrace is how long a cancelled selection gets between SIGINT and
// SIGKILL of the session's worker.
const sessionGrace = 2 * time.Second

// Start starts a Session: it runs `dbt deps` (when the project has a
// packages.yml and no dbt_packages directory) and `dbt parse`, and returns
// when dbt is ready to answer.
func (d *DBTLs) Start(ctx context.Context) (*Session, error) {
	tmp, err := os.MkdirTemp("", "dbtorch-ls-worker-")
	if err != nil {
		return nil, err
	}
	s := &Session{d: d, tmp: tmp, g: d.global(tmp)}
	fail := func(err error) (*Session, error) {
		_ = s.Close()
		return nil, err
	}
	script, err := pyworker.WriteScript(tmp)
	if err != nil {
		return fail(err)
	}
	py := d.Python
	if py == "" {
		dbtPath, err := d.Executable()
		if err == nil {
			py, err = dbt.Interpreter(dbtPath)
		}
		if err != nil {
			return fail(fmt.Errorf("selector: %w", err))
		}
	}
	if s.key, err = d.Vars.JSON(); err != nil {
		return fail(fmt.Errorf("selector: %w", err))
	}
	if s.parse, err = dbtargv.Parse(s.g); err != nil {
		return fail(fmt.Errorf("selector: %w", err))
	}
	var deps []string
	_, errPkg := os.Stat(filepath.Join(d.Dir, "packages.yml"))
	_, errDir := os.Stat(filepath.Join(d.Dir, "dbt_packages"))
	if errPkg == nil && errDir != nil {
		if deps, err = dbtargv.Deps(s.g); err != nil {
			return fail(fmt.Errorf("selector: %w", err))
		}
	}
	s.w, err = pyworker.Launch(ctx, pyworker.Config{Python: py, Script: script, Dir: d.Dir, Env: d.env()},
		pyworker.Request{DepsArgs: deps, ParseArgs: s.parse, Key: s.key})
	if err != nil {
		return fail(&DBTError{Args: []string{"parse"}, Output: err.Error(), Err: errors.New("worker not ready")})
	}
	return s, nil
}

// ManifestPath returns the manifest.json dbt wrote when the session
// started; it is removed by Close.
func (s *Session) ManifestPath() string { return filepath.Join(s.tmp, "target", "manifest.json") }

// Resolve implements Resolver: dbt's answer from the warm worker. When
// ctx ends first, the worker is stopped (a half-answered request cannot
// be resumed) and later calls fail.
func (s *Session) Resolve(ctx context.Context, opts Options) ([]string, error) {
	sel, err := s.d.args(opts)
	if err != nil {
		return nil, err
	}
	args, err := dbtargv.Ls(s.g, sel)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead != nil {
		return nil, s.dead
	}
	s.nextID++
	reply, err := s.w.Call(ctx, pyworker.Request{ID: s.nextID, Type: pyworker.Ls, Args: args, ParseArgs: s.parse, Key: s.key}, sessionGrace)
	switch {
	case ctx.Err() != nil && err != nil:
		s.dead = ctx.Err()
		return nil, err
	case err != nil:
		s.dead = fmt.Errorf("selector: dbt worker exited: %w", err)
		return nil, &DBTError{Args: []string{"(worker)"}, Output: strings.TrimSpace(s.w.Tail(100)), Err: s.dead}
	case !reply.Success:
		msg := "dbt ls failed"
		if reply.Error != nil {
			msg = *reply.Error
		}
		return nil, &DBTError{Args: sel, Output: msg}
	}
	if reply.IDs == nil {
		reply.IDs = []string{}
	}
	return reply.IDs, nil
}

// Close stops the worker and removes its files.
func (s *Session) Close() error {
	var err error
	if s.w != nil {
		if res := s.w.Close(10 * time.Second); res.Err != nil && s.dead == nil {
			err = fmt.Errorf("selector: dbt worker: %s", res.Describe("worker"))
		}
		s.w = nil
	}
	if rmErr := os.RemoveAll(s.tmp); err == nil {
		err = rmErr
	}
	return err
}
