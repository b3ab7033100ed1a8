package selector

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/internal/syncbuf"
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
	// DBT is the dbt executable.
	DBT string
	// Python is the interpreter that has dbt installed, for ResolveBatch;
	// empty means the "python" next to DBT.
	Python string
	// ProjectDir is the dbt project directory.
	ProjectDir string
	// ProfilesDir, Target and Vars are passed as --profiles-dir, --target
	// and --vars when set.
	ProfilesDir, Target, Vars string
	// Env is the environment of dbt; nil means os.Environ().
	Env []string
}

// NewDBTLs returns a resolver that runs the dbt executable at dbt in
// projectDir.
func NewDBTLs(dbt, projectDir string) *DBTLs {
	return &DBTLs{DBT: dbt, ProjectDir: projectDir}
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

func (d *DBTLs) baseArgs() []string {
	var a []string
	if d.ProfilesDir != "" {
		a = append(a, "--profiles-dir", d.ProfilesDir)
	}
	if d.Target != "" {
		a = append(a, "--target", d.Target)
	}
	if d.Vars != "" {
		a = append(a, "--vars", d.Vars)
	}
	return a
}

func (d *DBTLs) env(tmp string) []string {
	env := d.Env
	if env == nil {
		env = os.Environ()
	}
	return append(append([]string(nil), env...),
		"DBT_TARGET_PATH="+filepath.Join(tmp, "target"),
		"DBT_LOG_PATH="+filepath.Join(tmp, "logs"),
		"DBT_SEND_ANONYMOUS_USAGE_STATS=false", "DO_NOT_TRACK=1", "DBT_USE_COLORS=false")
}

// Resolve implements Resolver with one `dbt ls` process.
func (d *DBTLs) Resolve(ctx context.Context, opts Options) ([]string, error) {
	sel, err := d.args(opts)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "dbtorch-ls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"ls", "--quiet", "--output", "json", "--output-keys", "unique_id",
		"--project-dir", d.ProjectDir}, d.baseArgs()...)
	args = append(args, sel...)
	cmd := exec.CommandContext(ctx, d.DBT, args...)
	cmd.Dir = d.ProjectDir
	cmd.Env = d.env(tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &DBTError{Args: args, Output: strings.TrimSpace(stdout.String() + stderr.String()), Err: err}
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

//go:embed dbtls_worker.py
var workerScript []byte

// Session is a long-lived Python process that has parsed the project once
// and answers selections through dbt's programmatic runner (about 0.1 s per
// selection on a small project instead of seconds for a new `dbt ls`). It
// implements Resolver; calls are serialized. Close it when done.
type Session struct {
	d       *DBTLs
	tmp     string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies *bufio.Reader
	log     *syncbuf.Buffer
	mu      sync.Mutex
	dead    error
}

var _ Resolver = (*Session)(nil)

// Start starts a Session: it runs `dbt deps` (when the project has a
// packages.yml and no dbt_packages directory) and `dbt parse`, and returns
// when dbt is ready to answer.
func (d *DBTLs) Start(ctx context.Context) (*Session, error) {
	tmp, err := os.MkdirTemp("", "dbtorch-ls-worker-")
	if err != nil {
		return nil, err
	}
	s := &Session{d: d, tmp: tmp, log: &syncbuf.Buffer{}}
	fail := func(err error) (*Session, error) {
		_ = s.Close()
		return nil, err
	}
	script := filepath.Join(tmp, "dbtls_worker.py")
	if err := os.WriteFile(script, workerScript, 0o644); err != nil {
		return fail(err)
	}
	_, errPkg := os.Stat(filepath.Join(d.ProjectDir, "packages.yml"))
	_, errDir := os.Stat(filepath.Join(d.ProjectDir, "dbt_packages"))
	cfg, _ := json.Marshal(map[string]any{"project_dir": d.ProjectDir, "base_args": d.baseArgs(),
		"deps": errPkg == nil && errDir != nil})
	py := d.Python
	if py == "" {
		py = filepath.Join(filepath.Dir(d.DBT), "python")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	s.cmd = exec.Command(py, script, string(cfg))
	s.cmd.Dir = d.ProjectDir
	s.cmd.Env = d.env(tmp)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.ExtraFiles = []*os.File{w}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		r.Close()
		w.Close()
		return fail(err)
	}
	if err := s.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		s.cmd = nil
		return fail(err)
	}
	w.Close()
	s.replies = bufio.NewReaderSize(r, 1<<20)
	type ready struct {
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	}
	var rd ready
	if err := s.read(ctx, &rd); err != nil {
		return fail(err)
	}
	if !rd.Ready {
		return fail(&DBTError{Args: []string{"parse"}, Output: rd.Error + "\n" + s.logTail(), Err: errors.New("worker not ready")})
	}
	return s, nil
}

// read reads one reply line, giving up when ctx ends (the worker is then
// killed: a half-answered protocol cannot be resumed).
func (s *Session) read(ctx context.Context, v any) error {
	type res struct {
		line []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line, err := s.replies.ReadBytes('\n')
		ch <- res{line, err}
	}()
	select {
	case <-ctx.Done():
		s.dead = ctx.Err()
		_ = s.cmd.Process.Kill()
		return ctx.Err()
	case r := <-ch:
		if r.err != nil {
			s.dead = fmt.Errorf("selector: dbt worker exited: %w", r.err)
			return &DBTError{Args: []string{"(worker)"}, Output: strings.TrimSpace(s.logTail()), Err: s.dead}
		}
		return json.Unmarshal(r.line, v)
	}
}

// ManifestPath returns the manifest.json dbt wrote when the session
// started; it is removed by Close.
func (s *Session) ManifestPath() string { return filepath.Join(s.tmp, "target", "manifest.json") }

// Resolve implements Resolver: dbt's answer from the warm worker.
func (s *Session) Resolve(ctx context.Context, opts Options) ([]string, error) {
	args, err := s.d.args(opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead != nil {
		return nil, s.dead
	}
	if args == nil {
		args = []string{}
	}
	line, _ := json.Marshal(args)
	if _, err := s.stdin.Write(append(line, '\n')); err != nil {
		s.dead = err
		return nil, fmt.Errorf("selector: dbt worker: %w", err)
	}
	var reply struct {
		IDs   []string `json:"ids"`
		Error *string  `json:"error"`
	}
	if err := s.read(ctx, &reply); err != nil {
		return nil, err
	}
	if reply.Error != nil {
		return nil, &DBTError{Args: args, Output: *reply.Error}
	}
	if reply.IDs == nil {
		reply.IDs = []string{}
	}
	return reply.IDs, nil
}

// Close stops the worker and removes its files.
func (s *Session) Close() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		if s.stdin != nil {
			s.stdin.Close()
		}
		done := make(chan error, 1)
		go func() { done <- s.cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			err = <-done
		}
		s.cmd = nil
	}
	if rmErr := os.RemoveAll(s.tmp); err == nil {
		err = rmErr
	}
	if s.dead != nil && err != nil {
		return nil // the worker was killed on purpose
	}
	return err
}

// logTail returns the last 8,000 bytes of the worker's output, for errors.
func (s *Session) logTail() string {
	out := s.log.String()
	if len(out) > 8000 {
		out = out[len(out)-8000:]
	}
	return out
}
