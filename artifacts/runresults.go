package artifacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// RunResultsSchemaVersion is the dbt_schema_version RunResults writes.
const RunResultsSchemaVersion = "https://schemas.getdbt.com/dbt/run-results/v6.json"

// BuildIDArg is the key under "args" where RunResults records the build's
// ID. Its presence marks a run_results.json as written by dbtorch; dbt
// ignores keys it does not know.
const BuildIDArg = "dbtorch_build_id"

// RunResults writes dbt's run_results.json (schema v6) for a run. It
// implements orchestrator.Reporter.
//
// The file holds one result per node of the run, in the run's order (and,
// as dbt writes them, the project hooks the build ran, Run.Hooks: its
// on-run-start hooks first and its on-run-end hooks last), with
// dbt's own status words (see the package documentation), dbt's timing
// entries, adapter_response, message, failures, compiled code and relation
// name as the executor reported them, the build's ID as invocation_id, and
// the build's arguments with "which" set, so that `dbt retry --state DIR`
// and `dbt ls --select result:error+ --state DIR` (with manifest.json in
// DIR) work on it.
//
// The zero value is not usable: Path is required.
type RunResults struct {
	// Path is the file to write. It is written atomically; missing
	// directories are created.
	Path string
	// Fs is the file system to write on; nil means the operating system's.
	Fs afero.Fs
	// Overwrite allows replacing an existing file that dbtorch did not
	// write (dbt's own target/run_results.json, say). Without it Report
	// returns an error wrapping ErrForeignFile for such a file. A file
	// dbtorch wrote earlier is always replaced.
	Overwrite bool
	// CachedStatus is the status written for cached nodes: "success"
	// (default, with message "cached") or "no-op".
	CachedStatus string
	// DBTVersion is metadata.dbt_version; empty means the manifest's
	// dbt_version.
	DBTVersion string
	// Which is args.which, the dbt command `dbt retry` replays; empty
	// means the run's Args["which"], else "build".
	Which string
	// Env is metadata.env. Nil means dbt's own rule: the process's
	// environment variables named DBT_ENV_CUSTOM_ENV_<KEY>, as <KEY>.
	Env map[string]string
}

// RunResultsFile is the JSON document of run_results.json v6: its
// fields are the file's keys in dbt's order (metadata, results,
// elapsed_time, args). The one definition of the schema, shared with the
// executors that read dbt's own run_results.json, is internal; these
// aliases name it.
type RunResultsFile = runresults.File

// RunResultsMetadata is run_results.json's metadata block
// (dbt_schema_version, dbt_version, generated_at, invocation_id,
// invocation_started_at, env).
type RunResultsMetadata = runresults.Metadata

// RunResult is one node's entry in run_results.json. Every key dbt
// requires is always present; nullable ones (message, failures, compiled,
// compiled_code, relation_name) are nil pointers when unknown.
type RunResult = runresults.Result

// TimingInfo is one of dbt's timing entries ("compile", "execute"), its
// times in dbt's layout, nil (null) when unknown.
type TimingInfo = runresults.Timing

// Report writes the run's run_results.json to r.Path.
func (r *RunResults) Report(ctx context.Context, run *orchestrator.Run) error {
	if r.Path == "" {
		return errors.New("artifacts: RunResults.Path is empty")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fsys := fsOrOS(r.Fs)
	if !r.Overwrite {
		if err := checkOwned(fsys, r.Path); err != nil {
			return err
		}
	}
	doc, err := r.Build(run)
	if err != nil {
		return err
	}
	data, err := doc.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(fsys, r.Path, data)
}

// checkOwned returns an error wrapping ErrForeignFile when path exists and
// is not a run_results.json that dbtorch wrote.
func checkOwned(fsys afero.Fs, path string) error {
	data, err := afero.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("artifacts: check %s: %w", path, err)
	}
	// The key is in args; dbt never writes it. Looking for it is enough,
	// and cheap on a large file.
	if bytes.Contains(data, []byte(`"`+BuildIDArg+`":`)) {
		return nil
	}
	return fmt.Errorf("%w: %s (set Overwrite to replace it)", ErrForeignFile, path)
}

// Build returns the run_results.json document for run without writing it.
func (r *RunResults) Build(run *orchestrator.Run) (*RunResultsFile, error) {
	if run == nil {
		return nil, errors.New("artifacts: nil run")
	}
	cached := r.CachedStatus
	switch cached {
	case "":
		cached = "success"
	case "success", "no-op":
	default:
		return nil, fmt.Errorf("artifacts: CachedStatus %q: want \"success\" or \"no-op\"", cached)
	}
	doc := &RunResultsFile{
		Metadata: RunResultsMetadata{
			DBTSchemaVersion: RunResultsSchemaVersion,
			DBTVersion:       r.DBTVersion,
			GeneratedAt:      formatTime(orNow(run.CompletedAt)),
			Env:              r.env(),
		},
		Results: make([]RunResult, 0, len(run.Results)),
		Args:    runArgs(run, r.Which),
	}
	if doc.Metadata.DBTVersion == "" && run.Manifest != nil {
		doc.Metadata.DBTVersion = run.Manifest.Metadata.DBTVersion
	}
	if run.ID != "" {
		doc.Metadata.InvocationID = ptr(run.ID)
	}
	if !run.StartedAt.IsZero() {
		doc.Metadata.InvocationStartedAt = ptr(formatTime(run.StartedAt))
	}
	if !run.StartedAt.IsZero() && !run.CompletedAt.IsZero() {
		doc.ElapsedTime = run.CompletedAt.Sub(run.StartedAt).Seconds()
	}
	start, end := hookResults(run)
	for _, rs := range [][]orchestrator.NodeResult{start, run.Results, end} {
		for i := range rs {
			doc.Results = append(doc.Results, runResult(run, &rs[i], cached))
		}
	}
	return doc, nil
}

// hookResults returns the project hooks the build ran (Run.Hooks) as node
// results of operations: the on-run-start hooks, which dbt writes before
// the nodes, and the on-run-end hooks, which it writes after them.
func hookResults(run *orchestrator.Run) (start, end []orchestrator.NodeResult) {
	for _, h := range run.Hooks {
		nr := orchestrator.NodeResult{Result: h, ResourceType: manifest.Operation, Status: orchestrator.Success}
		switch h.Status {
		case executor.Error:
			nr.Status = orchestrator.Error
		case executor.Skipped:
			nr.Status = orchestrator.Skipped
		}
		if strings.Contains(h.UniqueID, "-on-run-start-") {
			start = append(start, nr)
		} else {
			end = append(end, nr)
		}
	}
	return start, end
}

// customEnvPrefix marks the environment variables dbt copies into its
// artifacts' metadata.env.
const customEnvPrefix = "DBT_ENV_CUSTOM_ENV_"

func (r *RunResults) env() map[string]string {
	env := map[string]string{}
	if r.Env != nil {
		maps.Copy(env, r.Env)
		return env
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, customEnvPrefix) && len(k) > len(customEnvPrefix) {
			env[k[len(customEnvPrefix):]] = v
		}
	}
	return env
}

// runArgs returns the args block: the run's Args, "which", and the build ID.
func runArgs(run *orchestrator.Run, which string) map[string]any {
	args := make(map[string]any, len(run.Args)+2)
	for k, v := range run.Args {
		// dbt retry turns a null into --no-<flag>, which most flags reject,
		// and an empty string into --flag=; leave both out.
		if v == nil || v == "" {
			continue
		}
		args[k] = v
	}
	switch {
	case which != "":
		args["which"] = which
	case args["which"] == nil:
		args["which"] = "build"
	}
	args[BuildIDArg] = run.ID
	return args
}

// resourceType returns the node's resource type, from the result, the
// manifest or the unique_id's prefix.
func resourceType(run *orchestrator.Run, nr *orchestrator.NodeResult) manifest.ResourceType {
	if nr.ResourceType != "" {
		return nr.ResourceType
	}
	if n := lookup(run, nr.UniqueID); n != nil {
		return n.ResourceType
	}
	prefix, _, _ := strings.Cut(nr.UniqueID, ".")
	return manifest.ResourceType(prefix)
}

// lookup returns the manifest node for id, or nil.
func lookup(run *orchestrator.Run, id string) *manifest.Node {
	if run.Manifest == nil {
		return nil
	}
	return run.Manifest.Lookup(id)
}

func isTestType(rt manifest.ResourceType) bool {
	return rt == manifest.Test || rt == manifest.UnitTest
}

// DBTStatus returns the status word run_results.json uses for a node
// result: dbt's own word when the executor reported one that fits the
// outcome, else the word dbt uses for the outcome and resource type.
// cachedStatus is the word for cached nodes ("success" or "no-op").
func DBTStatus(rt manifest.ResourceType, nr *orchestrator.NodeResult, cachedStatus string) string {
	test := isTestType(rt)
	switch nr.Status {
	case orchestrator.Success:
		if test {
			if nr.DBTStatus == "warn" {
				return "warn"
			}
			return "pass"
		}
		if nr.DBTStatus == orchestrator.NoOpStatus {
			return orchestrator.NoOpStatus // an exposure or saved query
		}
		return "success"
	case orchestrator.Error:
		if test {
			if nr.DBTStatus == "fail" || (nr.Err != nil && nr.Err.Kind == "test_failure" && nr.DBTStatus == "") {
				return "fail"
			}
			return "error"
		}
		if nr.DBTStatus == "partial success" {
			return "partial success"
		}
		return "error"
	case orchestrator.Cached:
		if test {
			return "pass"
		}
		return cachedStatus
	}
	return "skipped"
}

// nodeMessage returns the message to show for a result: dbt's message, the
// error's, the skip reason, or "cached".
func nodeMessage(nr *orchestrator.NodeResult) string {
	switch {
	case nr.Message != "":
		return nr.Message
	case nr.Err != nil && nr.Err.Message != "":
		return nr.Err.Message
	case nr.Status == orchestrator.Skipped:
		return skipReason(nr)
	case nr.Status == orchestrator.Cached:
		return "cached"
	}
	return ""
}

// skipReason explains a skipped node.
func skipReason(nr *orchestrator.NodeResult) string {
	switch {
	case nr.SkipReason != "" && len(nr.FailedUpstream) > 0 && !strings.Contains(nr.SkipReason, nr.FailedUpstream[0]):
		return nr.SkipReason + ": " + strings.Join(nr.FailedUpstream, ", ")
	case nr.SkipReason != "":
		return nr.SkipReason
	case len(nr.FailedUpstream) > 0:
		return "upstream failed: " + strings.Join(nr.FailedUpstream, ", ")
	}
	return "skipped"
}

func runResult(run *orchestrator.Run, nr *orchestrator.NodeResult, cachedStatus string) RunResult {
	rt := resourceType(run, nr)
	ran := nr.Status == orchestrator.Success || nr.Status == orchestrator.Error
	out := RunResult{
		Status:          DBTStatus(rt, nr, cachedStatus),
		Timing:          []TimingInfo{},
		ThreadID:        nr.ThreadID,
		AdapterResponse: map[string]any{},
		Failures:        nr.Failures,
		UniqueID:        nr.UniqueID,
		CompiledCode:    ptr(""),
	}
	if out.ThreadID == "" {
		out.ThreadID = "dbtorch"
	}
	maps.Copy(out.AdapterResponse, nr.AdapterResponse)
	if nr.RowsAffected != nil {
		if _, ok := out.AdapterResponse["rows_affected"]; !ok {
			out.AdapterResponse["rows_affected"] = *nr.RowsAffected
		}
	}
	if ran {
		for _, t := range nr.Timing {
			out.Timing = append(out.Timing, runresults.NewTiming(t.Name, t.StartedAt, t.CompletedAt))
		}
		if len(out.Timing) == 0 && !nr.StartedAt.IsZero() {
			out.Timing = append(out.Timing, runresults.NewTiming("execute", nr.StartedAt, nr.CompletedAt))
		}
		out.ExecutionTime = nr.ExecutionTime.Seconds()
		if out.ExecutionTime == 0 && !nr.StartedAt.IsZero() && nr.CompletedAt.After(nr.StartedAt) {
			out.ExecutionTime = nr.CompletedAt.Sub(nr.StartedAt).Seconds()
		}
	}
	if b := nr.Batches; b != nil && ran {
		out.BatchResults = runresults.BatchResultsOf(batchesOf(b.Successful), batchesOf(b.Failed))
	}
	if msg := nodeMessage(nr); msg != "" {
		out.Message = &msg
	}
	switch {
	case rt == manifest.Seed && ran:
		// dbt writes compiled: null for seeds: there is nothing to compile.
	case ran && nr.CompiledCode != "":
		out.Compiled = ptr(true)
		out.CompiledCode = ptr(nr.CompiledCode)
	default:
		out.Compiled = ptr(false)
	}
	rel := nr.RelationName
	if rel == "" && (rt == manifest.Model || rt == manifest.Snapshot) {
		if n := lookup(run, nr.UniqueID); n != nil {
			rel = n.RelationName
		}
	}
	if rel != "" {
		out.RelationName = &rel
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func batchesOf(ws [][2]time.Time) []runresults.Batch {
	out := make([]runresults.Batch, len(ws))
	for i, w := range ws {
		out[i] = w
	}
	return out
}

func formatTime(t time.Time) string { return runresults.FormatTime(t) }

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
