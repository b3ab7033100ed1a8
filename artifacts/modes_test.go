package artifacts_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestReportersThroughRunBuild plugs every reporter into orchestrator
// builds in both modes (a fake executor fails one model) and validates
// what they write: run_results.json against dbt's schema, the Mermaid
// chart with mermaid, JUnit against both XSDs, lineage events against the
// OpenLineage schemas.
func TestReportersThroughRunBuild(t *testing.T) {
	rrSchema := runResultsSchema(t)
	olSchemas := openLineageSchemas(t)
	junitDir := filepath.Join(dbttest.SharedDir(t), "reference", "junit")
	var charts []string
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			m := fixtureManifest()
			fs := afero.NewMemMapFs()
			tr := &artifacts.FileTransport{Path: "/o/lineage.jsonl", Fs: fs}
			o, err := orchestrator.New(orchestrator.Config{
				Executor: fakeExecutor{fail: map[string]bool{"model.shop.customer_revenue": true}}, Manifest: m, Mode: mode, Concurrency: 2,
				Reporters: []orchestrator.Reporter{
					&artifacts.RunResults{Path: "/o/run_results.json", Fs: fs},
					&artifacts.Summary{Path: "/o/summary.md", Fs: fs},
					&artifacts.JUnit{Path: "/o/junit.xml", Fs: fs},
					&artifacts.Lineage{Transport: tr},
				},
			})
			require.NoError(t, err)
			run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{})
			var be *orchestrator.BuildError
			require.ErrorAs(t, err, &be)
			require.NoError(t, tr.Close(t.Context()))

			rr, err := afero.ReadFile(fs, "/o/run_results.json")
			require.NoError(t, err)
			validate(t, rrSchema, rr)
			doc := mustJSON(t, rr)
			statuses := map[string]string{}
			for _, r := range doc["results"].([]any) {
				r := r.(map[string]any)
				statuses[r["unique_id"].(string)] = r["status"].(string)
			}
			assert.Len(t, statuses, len(run.Results))
			assert.Equal(t, "error", statuses["model.shop.customer_revenue"])
			assert.Equal(t, "skipped", statuses["model.shop.revenue_by_segment"])
			assert.Equal(t, "pass", statuses["test.shop.not_null_stg_customers_customer_id.e2cfb1f9aa"])
			assert.Equal(t, run.ID, doc["metadata"].(map[string]any)["invocation_id"])

			md, err := afero.ReadFile(fs, "/o/summary.md")
			require.NoError(t, err)
			chart := mermaidBlock.FindStringSubmatch(string(md))
			require.NotNil(t, chart)
			charts = append(charts, chart[1])
			gantt := ganttBlock.FindStringSubmatch(string(md))
			require.NotNil(t, gantt, "the summary has a timeline")
			charts = append(charts, gantt[1])

			junit, err := afero.ReadFile(fs, "/o/junit.xml")
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "junit.xml")
			require.NoError(t, afero.WriteFile(afero.NewOsFs(), path, junit, 0o644))
			for _, xsd := range []string{"JUnit.xsd", "junit-10.xsd"} {
				assert.Empty(t, validateXML(t, filepath.Join(junitDir, xsd), path), xsd)
			}

			events, err := afero.ReadFile(fs, "/o/lineage.jsonl")
			require.NoError(t, err)
			lines := bytes.Split(bytes.TrimSpace(events), []byte("\n"))
			assert.Equal(t, 2+2*6, len(lines), "the build + 6 models, seeds and snapshots that ran")
			for _, line := range lines {
				for _, err := range olSchemas.check(t, line) {
					t.Errorf("%v\nevent: %s", err, line)
				}
			}
		})
	}
	for i, err := range parseMermaid(t, charts...) {
		assert.Empty(t, err, "chart %d", i)
	}
}
