package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

func sharedManifest(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(dbttest.SharedDir(t), "reference", "manifests", name)
	_, err := os.Stat(path)
	require.NoError(t, err, "shared manifest")
	return path
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPlanJSONContract(t *testing.T) {
	path := sharedManifest(t, "bouncer_v12_dbt1.12.2.json")
	for _, strategy := range []string{"immediate", "deferred", "skip"} {
		t.Run(strategy, func(t *testing.T) {
			code, out, errs := runCLI(t, "plan", "--manifest", path, "--test-strategy", strategy)
			require.Equal(t, 0, code, errs)
			var got planJSON
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.NotEmpty(t, got.Waves)
			seen := map[string]bool{}
			tests := 0
			for i, w := range got.Waves {
				assert.Equal(t, i, w.Wave)
				assert.True(t, sort.StringsAreSorted(w.Nodes), "wave %d not sorted", i)
				for _, id := range w.Nodes {
					assert.False(t, seen[id], "%s twice", id)
					seen[id] = true
					if strings.HasPrefix(id, "test.") || strings.HasPrefix(id, "unit_test.") {
						tests++
					}
				}
			}
			switch strategy {
			case "skip":
				assert.Zero(t, tests)
			case "deferred":
				last := got.Waves[len(got.Waves)-1].Nodes
				assert.Len(t, last, tests, "deferred: all tests in the last wave")
			default:
				assert.Positive(t, tests)
			}
		})
	}
}

func TestPlanSelectAndOutputs(t *testing.T) {
	path := sharedManifest(t, "bouncer_v12_dbt1.12.2.json")
	code, out, errs := runCLI(t, "plan", "--manifest", path, "--select", "+orders", "--test-strategy", "skip")
	require.Equal(t, 0, code, errs)
	var got planJSON
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	var all []string
	for _, w := range got.Waves {
		all = append(all, w.Nodes...)
	}
	assert.Contains(t, all, "model.dbt_bouncer_test_project.orders")
	assert.Contains(t, all, "seed.dbt_bouncer_test_project.raw_orders")
	assert.NotContains(t, all, "model.dbt_bouncer_test_project.customers.v3")
	assert.Equal(t, "model.dbt_bouncer_test_project.orders", got.Waves[len(got.Waves)-1].Nodes[0])

	code, out, errs = runCLI(t, "plan", "--manifest", path, "--output", "mermaid")
	require.Equal(t, 0, code, errs)
	assert.True(t, strings.HasPrefix(out, "flowchart LR\n"))
	assert.Contains(t, out, "subgraph wave0")
	assert.Contains(t, out, " --> ")

	code, out, errs = runCLI(t, "plan", "--manifest", path, "--output", "text")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^\d+ nodes in \d+ waves \(widest \d+\), tests immediate`, out)
}

func TestPlanBadInput(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	require.NoError(t, os.WriteFile(broken, []byte(`{"nodes": {"model.p.a": {"name": "a"}}}`), 0o644))
	notJSON := filepath.Join(dir, "not.json")
	require.NoError(t, os.WriteFile(notJSON, []byte(`{"nodes": {"model.p.a": {"unique_id": tru`), 0o644))
	good := sharedManifest(t, "piperider_jaffle_v8_dbt1.4.2.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no manifest flag", []string{"plan"}, "--manifest is required"},
		{"missing file", []string{"plan", "--manifest", filepath.Join(dir, "nope.json")}, "no such file"},
		{"node without unique_id", []string{"plan", "--manifest", broken}, `nodes["model.p.a"].unique_id`},
		{"invalid json", []string{"plan", "--manifest", notJSON}, "invalid JSON"},
		{"unknown strategy", []string{"plan", "--manifest", good, "--test-strategy", "later"}, "unknown test strategy"},
		{"unknown method", []string{"plan", "--manifest", good, "--select", "bogus:x"}, "bogus"},
		{"unknown output", []string{"plan", "--manifest", good, "--output", "yaml"}, "unknown --output"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tt.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Contains(t, errs, tt.want)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one-line message: %q", errs)
		})
	}
}

// TestPlanInferredEdges: fivetran_hubspot's integration tests load its
// sources as seeds; plan lists the 41 edges it infers from them, with a
// warning each, marks them in text and Mermaid, and leaves the JSON of a
// plan without any as it was.
func TestPlanInferredEdges(t *testing.T) {
	path := sharedManifest(t, "fivetran_hubspot_v4_dbt1.0.4.json")
	code, out, errs := runCLI(t, "plan", "--manifest", path, "--test-strategy", "skip")
	require.Equal(t, 0, code, errs)
	var got planJSON
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.InferredEdges, 41)
	assert.Len(t, got.Warnings, 41)
	e := got.InferredEdges[0]
	assert.Equal(t, inferredEdgeJSON{Writer: "seed.hubspot_integration_tests.company_property_history_data",
		Reader: "model.hubspot_source.stg_hubspot__company_property_history_tmp", Source: "source.hubspot_source.hubspot.company_property_history",
		Relation: `"postgres"."hubspot_integration_tests"."company_property_history_data"`}, e)
	wave := map[string]int{}
	for _, w := range got.Waves {
		for _, id := range w.Nodes {
			wave[id] = w.Wave
		}
	}
	for _, e := range got.InferredEdges {
		assert.Less(t, wave[e.Writer], wave[e.Reader], "%s -> %s", e.Writer, e.Reader)
	}

	code, out, errs = runCLI(t, "plan", "--manifest", path, "--test-strategy", "skip", "--output", "text")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "  model.hubspot_source.stg_hubspot__company_tmp  <- seed.hubspot_integration_tests.company_data (inferred)\n")
	assert.Equal(t, 41, strings.Count(out, "\nwarning: inferred edge: "))
	code, out, errs = runCLI(t, "plan", "--manifest", path, "--test-strategy", "skip", "--output", "mermaid")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, 41, strings.Count(out, " -. inferred .-> "))
	assert.Equal(t, 41, strings.Count(out, "%% warning: "))

	code, out, errs = runCLI(t, "plan", "--manifest", sharedManifest(t, "bouncer_v12_dbt1.12.2.json"))
	require.Equal(t, 0, code, errs)
	assert.NotContains(t, out, "inferred_edges")
	assert.NotContains(t, out, "warnings")
}
