package cloudtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShellSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"dbt run --select a b", []string{"dbt", "run", "--select", "a", "b"}},
		{`dbt run --vars '{"a": "it'"'"'s"}'`, []string{"dbt", "run", "--vars", `{"a": "it's"}`}},
		{`dbt  run "x y" z\ w`, []string{"dbt", "run", "x y", "z w"}},
		{`dbt run ''`, []string{"dbt", "run", ""}},
	} {
		assert.Equal(t, tc.want, shellSplit(tc.in), tc.in)
	}
}

// TestEnvelope checks the raw shapes of answers: the envelope with its
// status block, pagination in extra, and the error bodies; the status
// codes openapi-v2.yaml documents (200 for a creation, 204 and no body for
// a deletion); the jobs' state filter.
func TestEnvelope(t *testing.T) {
	s, err := NewServer(Options{PageSize: 1})
	require.NoError(t, err)
	defer s.Close()
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, fmt.Sprintf("%s/api/v2/accounts/%d/%s", s.URL, s.AccountID(), path), strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Token "+s.Token())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		if resp.StatusCode != http.StatusNoContent {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		}
		return resp.StatusCode, out
	}
	job := `{"account_id":1,"project_id":10,"environment_id":20,"name":"%s","execute_steps":["dbt run"],
		"settings":{"threads":1,"target_name":"default"},"execution":{"timeout_seconds":0},
		"triggers":{"github_webhook":false,"schedule":false},"state":1,"generate_docs":false,
		"run_generate_sources":false,"run_lint":false,"errors_on_lint_failure":false,
		"run_compare_changes":false,"lifecycle_webhooks":false}`
	for _, n := range []string{"a", "b"} {
		code, out := do(http.MethodPost, "jobs/", fmt.Sprintf(job, n))
		require.Equal(t, 200, code, out)
		st := out["status"].(map[string]any)
		assert.Equal(t, true, st["is_success"])
		assert.EqualValues(t, 200, st["code"])
		assert.Equal(t, n, out["data"].(map[string]any)["name"])
	}
	code, out := do(http.MethodGet, "jobs/?offset=1", "")
	require.Equal(t, 200, code)
	assert.Len(t, out["data"], 1)
	assert.Equal(t, map[string]any{"count": 1.0, "total_count": 2.0}, out["extra"].(map[string]any)["pagination"])

	code, out = do(http.MethodPost, "jobs/", `{"name":"x"}`)
	require.Equal(t, 400, code)
	assert.Equal(t, false, out["status"].(map[string]any)["is_success"])
	fe := out["data"].(map[string]any)["field_errors"].(map[string]any)
	for _, k := range requiredJobKeys {
		if k != "name" {
			assert.Contains(t, fe, k)
		}
	}
	code, _ = do(http.MethodGet, "jobs/?limit=101", "")
	assert.Equal(t, 400, code)
	code, _ = do(http.MethodGet, "runs/999/", "")
	assert.Equal(t, 404, code)
	assert.Equal(t, 3, s.Calls(ListJobs)+s.Calls(GetRun))

	first := s.Jobs()[0].ID
	code, _ = do(http.MethodDelete, fmt.Sprintf("jobs/%d/", first), "")
	require.Equal(t, 204, code)
	code, _ = do(http.MethodDelete, fmt.Sprintf("jobs/%d/", first), "")
	assert.Equal(t, 404, code)
	states := func(state string) (ids []any) {
		code, out := do(http.MethodGet, "jobs/?limit=1&"+state, "")
		require.Equal(t, 200, code)
		for _, j := range out["data"].([]any) {
			ids = append(ids, j.(map[string]any)["id"])
		}
		return ids
	}
	assert.NotContains(t, states(""), float64(first), "active jobs by default")
	assert.Equal(t, []any{float64(first)}, states("state=deleted"))
	assert.Equal(t, []any{float64(first)}, states("state=2"))
	assert.Equal(t, []any{float64(first)}, states("state=all"), "the first page of all, by id")
	for _, j := range s.Jobs() {
		code, _ := do(http.MethodDelete, fmt.Sprintf("jobs/%d/", j.ID), "")
		require.Equal(t, 204, code)
	}
	assert.Empty(t, s.Jobs())
	assert.Equal(t, 2, s.JobsCreated())
}
