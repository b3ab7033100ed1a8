package artifacts_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestResultsContract: the Results reporter writes the results contract
// (what `dbtorch build --results` writes) byte for byte as
// WriteResultsJSON does, with every key of the contract.
func TestResultsContract(t *testing.T) {
	run := fixtureRun(t)
	fs := afero.NewMemMapFs()
	require.NoError(t, (&artifacts.Results{Path: "/out/results.json", Fs: fs}).Report(t.Context(), run))
	got, err := afero.ReadFile(fs, "/out/results.json")
	require.NoError(t, err)
	var want bytes.Buffer
	require.NoError(t, artifacts.WriteResultsJSON(&want, run))
	assert.Equal(t, want.String(), string(got))

	var doc artifacts.RunJSON
	require.NoError(t, json.Unmarshal(got, &doc))
	assert.Equal(t, run.ID, doc.RunID)
	require.Len(t, doc.Results, len(run.Results))
	assert.Equal(t, run.Count(orchestrator.Cached), doc.Counts[orchestrator.Cached])
	for k := range run.Results {
		nr, js := &run.Results[k], &doc.Results[k]
		assert.Equal(t, nr.UniqueID, js.UniqueID)
		assert.Equal(t, nr.Status, js.Status)
		assert.Equal(t, nr.DBTStatus, js.DBTStatus)
		assert.Equal(t, nr.Message, js.Message)
		assert.Len(t, js.Attempts, len(nr.Attempts))
	}
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(got, &keys))
	for _, k := range []string{"run_id", "started_at", "completed_at", "elapsed_seconds", "args", "counts", "waves", "results", "warnings"} {
		assert.Contains(t, keys, k)
	}
	assert.Error(t, (&artifacts.Results{}).Report(t.Context(), run), "no path")
}
