package selector

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// DBTLs resolves selections by asking dbt: `dbt ls --output json
// --output-keys unique_id` in the project directory. It is the reference
// the Native resolver is tested against, for users who want dbt's own word.
// Each Resolve starts one dbt process (seconds); ResolveBatch answers many
// selections from one Python process that parses the project once.
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

//go:embed dbtls_batch.py
var batchScript []byte

// BatchResult is dbt's answer to one selection of a batch: the sorted
// unique_ids, or the error dbt raised.
type BatchResult struct {
	IDs []string
	Err error
}

// ResolveBatch answers every selection in opts from one Python process
// that parses the project once and calls dbt's programmatic runner for
// each (about 0.1 s per selection on a small project instead of seconds).
// The returned error is for the batch as a whole; per-selection errors
// are in the results.
func (d *DBTLs) ResolveBatch(ctx context.Context, opts []Options) ([]BatchResult, error) {
	queries := make([][]string, len(opts))
	pre := make([]error, len(opts))
	for i, o := range opts {
		a, err := d.args(o)
		if err != nil {
			pre[i] = err
			a = []string{"--select", "fqn:__dbtorch_invalid__"}
		}
		queries[i] = a
	}
	tmp, err := os.MkdirTemp("", "dbtorch-ls-batch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "dbtls_batch.py")
	reqPath, respPath := filepath.Join(tmp, "request.json"), filepath.Join(tmp, "response.json")
	req, _ := json.Marshal(map[string]any{"project_dir": d.ProjectDir, "base_args": d.baseArgs(), "queries": queries})
	if err := os.WriteFile(script, batchScript, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		return nil, err
	}
	py := d.Python
	if py == "" {
		py = filepath.Join(filepath.Dir(d.DBT), "python")
	}
	cmd := exec.CommandContext(ctx, py, script, reqPath, respPath)
	cmd.Dir = d.ProjectDir
	cmd.Env = d.env(tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, &DBTError{Args: []string{"(batch)", fmt.Sprint(len(opts), " selections")}, Output: strings.TrimSpace(string(out)), Err: err}
	}
	data, err := os.ReadFile(respPath)
	if err != nil {
		return nil, fmt.Errorf("selector: dbt batch: %w", err)
	}
	var resp []struct {
		IDs   []string `json:"ids"`
		Error *string  `json:"error"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || len(resp) != len(opts) {
		return nil, fmt.Errorf("selector: dbt batch: bad response (%d answers for %d selections): %v", len(resp), len(opts), err)
	}
	results := make([]BatchResult, len(opts))
	for i, r := range resp {
		switch {
		case pre[i] != nil:
			results[i].Err = pre[i]
		case r.Error != nil:
			results[i].Err = &DBTError{Args: queries[i], Output: *r.Error}
		default:
			results[i].IDs = r.IDs
			if results[i].IDs == nil {
				results[i].IDs = []string{}
			}
		}
	}
	return results, nil
}
