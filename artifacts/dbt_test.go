package artifacts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// dbtResults is the part of dbt's own run_results.json that the fixture
// conversion reads.
type dbtResults struct {
	Results []struct {
		Status          string         `json:"status"`
		UniqueID        string         `json:"unique_id"`
		Message         *string        `json:"message"`
		Failures        *int64         `json:"failures"`
		ThreadID        string         `json:"thread_id"`
		ExecutionTime   float64        `json:"execution_time"`
		AdapterResponse map[string]any `json:"adapter_response"`
		CompiledCode    *string        `json:"compiled_code"`
		RelationName    *string        `json:"relation_name"`
		Timing          []struct {
			Name        string    `json:"name"`
			StartedAt   time.Time `json:"started_at"`
			CompletedAt time.Time `json:"completed_at"`
		} `json:"timing"`
	} `json:"results"`
}

// lsIDs runs `dbt ls` with args and returns the unique_ids it printed, sorted.
func lsIDs(t *testing.T, dir string, env []string, args ...string) []string {
	t.Helper()
	out, err := dbttest.Run(t, dir, env, append([]string{"ls", "--quiet", "--output", "json", "--output-keys", "unique_id"}, args...)...)
	require.NoError(t, err, out)
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var v struct {
			UniqueID string `json:"unique_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		ids = append(ids, v.UniqueID)
	}
	sort.Strings(ids)
	return ids
}

// findFile returns the first file named name under dir, or "".
func findFile(t *testing.T, dir, name string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && found == "" && !d.IsDir() && d.Name() == name {
			found = path
		}
		return nil
	})
	return found
}

// TestDBTReadsOurArtifacts is the end-to-end check: a real build of
// testdata/shop through orchestrator.RunBuild with a broken model, every
// reporter of this package plugged in; then dbt itself reads our
// run_results.json: `dbt ls --select result:error+ --state DIR` lists the
// failed node and everything downstream of it, and `dbt retry --state DIR`
// re-runs exactly the nodes that failed or were skipped. The other
// artifacts of the same build are validated too (schema, Mermaid, XSD,
// OpenLineage).
func TestDBTReadsOurArtifacts(t *testing.T) {
	p := dbttest.Project(t, "shop")
	p.ProfilesDir = p.Dir
	dir, env := p.Dir, p.Env
	work := t.TempDir()
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: p,
			WorkDir:       work,
			KeepArtifacts: true,
		},
		Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ex.Close() })
	m, err := ex.Manifest(t.Context())
	require.NoError(t, err)

	state, out := t.TempDir(), t.TempDir()
	lineage := filepath.Join(out, "lineage.jsonl")
	lineageFile := &artifacts.FileTransport{Path: lineage}
	o, err := orchestrator.New(orchestrator.Config{
		Executor: ex, Manifest: m, Concurrency: 1,
		Reporters: []orchestrator.Reporter{
			&artifacts.RunResults{Path: filepath.Join(state, "run_results.json")},
			&artifacts.Summary{Path: filepath.Join(out, "summary.md"), CompiledSQL: true},
			&artifacts.JUnit{Path: filepath.Join(out, "junit.xml")},
			&artifacts.Lineage{Transport: lineageFile, DatasetNamespace: "duckdb://" + filepath.Join(dir, "shop.duckdb")},
		},
	})
	require.NoError(t, err)
	// The broken model with everything upstream (so that it reaches the
	// warehouse) and downstream of it.
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"+customer_revenue+"}}, Vars: map[string]any{"broken_model": true}})
	var be *orchestrator.BuildError
	require.ErrorAs(t, err, &be, "the broken model fails the build")
	require.NoError(t, ex.Close(), "warm workers hold the DuckDB file; dbt retry needs it")
	require.NoError(t, lineageFile.Close(t.Context()))

	var failed, retryable []string
	for _, r := range run.Results {
		switch r.Status {
		case orchestrator.Error:
			failed = append(failed, r.UniqueID)
			retryable = append(retryable, r.UniqueID)
		case orchestrator.Skipped:
			retryable = append(retryable, r.UniqueID)
		}
	}
	require.Equal(t, []string{"model.shop.customer_revenue"}, failed)

	// run_results.json validates against dbt's schema.
	written, err := os.ReadFile(filepath.Join(state, "run_results.json"))
	require.NoError(t, err)
	validate(t, runResultsSchema(t), written)

	// The other artifacts of the same build are valid too.
	md, err := os.ReadFile(filepath.Join(out, "summary.md"))
	require.NoError(t, err)
	chart := mermaidBlock.FindStringSubmatch(string(md))
	require.NotNil(t, chart)
	gantt := ganttBlock.FindStringSubmatch(string(md))
	require.NotNil(t, gantt, "the summary has a timeline")
	assert.Equal(t, []string{"", ""}, parseMermaid(t, chart[1], gantt[1]))
	assert.Contains(t, string(md), "**Critical path**")
	assert.Contains(t, gantt[1], "section customer_revenue\n")
	assert.Contains(t, string(md), "Binder Error")
	for _, xsd := range []string{"JUnit.xsd", "junit-10.xsd"} {
		assert.Empty(t, validateXML(t, filepath.Join(dbttest.SharedDir(t), "reference", "junit", xsd), filepath.Join(out, "junit.xml")), xsd)
	}
	events, err := os.ReadFile(lineage)
	require.NoError(t, err)
	schemas := openLineageSchemas(t)
	lines := strings.Split(strings.TrimSpace(string(events)), "\n")
	assert.Greater(t, len(lines), 20)
	for _, line := range lines {
		for _, err := range schemas.check(t, []byte(line)) {
			t.Errorf("%v\nevent: %s", err, line)
		}
	}

	// dbt's --state needs the manifest beside run_results.json.
	manifestPath := findFile(t, work, "manifest.json")
	if manifestPath == "" {
		manifestPath = dbttest.Parse(t, dir, env)
	}
	manifestData, err := os.ReadFile(manifestPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(state, "manifest.json"), manifestData, 0o644))

	// dbt ls over our results lists the failed node and its descendants
	// (tests of the descendants included, as dbt's eager indirect selection
	// does).
	got := lsIDs(t, dir, env, "--select", "result:error+", "--state", state)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	want := append([]string{"model.shop.customer_revenue"}, g.Descendants("model.shop.customer_revenue", -1)...)
	sort.Strings(want)
	assert.Equal(t, want, got)
	assert.Contains(t, got, "model.shop.revenue_by_segment")
	assert.NotContains(t, got, "model.shop.fct_orders")

	// A cached node written as "no-op" is what dbt 1.11 selects with
	// result:no-op (and, by default, "success" with result:success).
	cached := *run
	cached.Results = slices.Clone(run.Results)
	for i := range cached.Results {
		if cached.Results[i].UniqueID == "model.shop.fct_orders" {
			cached.Results[i].Status = orchestrator.Cached
		}
	}
	noop := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(noop, "manifest.json"), manifestData, 0o644))
	require.NoError(t, (&artifacts.RunResults{Path: filepath.Join(noop, "run_results.json"), CachedStatus: "no-op"}).Report(t.Context(), &cached))
	got = lsIDs(t, dir, env, "--select", "result:no-op", "--state", noop, "--resource-type", "model")
	assert.Equal(t, []string{"model.shop.fct_orders"}, got)

	// dbt retry re-runs what failed or was skipped, and only that.
	_ = os.Remove(filepath.Join(dir, "target", "run_results.json"))
	retryOut, err := dbttest.Run(t, dir, env, "retry", "--state", state, "--vars", `{broken_model: false}`)
	require.NoError(t, err, retryOut)
	retried, err := os.ReadFile(filepath.Join(dir, "target", "run_results.json"))
	require.NoError(t, err)
	validate(t, runResultsSchema(t), retried) // the validator takes dbt's own file, too
	var rr dbtResults
	require.NoError(t, json.Unmarshal(retried, &rr))
	var ids []string
	for _, r := range rr.Results {
		ids = append(ids, r.UniqueID)
		assert.Contains(t, []string{"success", "pass"}, r.Status, "%s after retry", r.UniqueID)
	}
	sort.Strings(ids)
	sort.Strings(retryable)
	assert.Equal(t, retryable, ids)
}
