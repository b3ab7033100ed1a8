package executor_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestParseNewerStatuses: dbt 1.12's reused status and dbt state's
// tests checked without running (pass, adapter_response NO-OP) are
// Reused, never an error; a saved query's no-op is a Success.
func TestParseNewerStatuses(t *testing.T) {
	data, err := os.ReadFile("../internal/runresults/testdata/build_newer_statuses.json")
	require.NoError(t, err)
	rs, inv, err := executor.ParseRunResults(data)
	require.NoError(t, err)
	assert.Equal(t, "5b0e3c44-7f4e-4a53-9d0a-0c9e0a6b1f20", inv)
	got := map[string]executor.Status{}
	for _, r := range rs {
		got[r.UniqueID] = r.Status
		assert.Equal(t, executor.KindNone, r.Kind, r.UniqueID)
	}
	assert.Equal(t, map[string]executor.Status{
		"model.shop.stg_orders":                                  executor.Reused,
		"test.shop.not_null_stg_orders_order_id.81cfe2fe64":      executor.Reused,
		"test.shop.unique_stg_orders_order_id.e3b841c71a":        executor.Success,
		"saved_query.shop.orders_by_day":                         executor.Success,
		"model.shop.fct_orders":                                  executor.Success,
		"test.shop.accepted_values_fct_orders_status.1ce6ab157c": executor.Success,
	}, got)
}

// TestCommandFlags: --empty and --sample given to every invocation
// (ExtraArgs) and a request's Empty and event-time window reach only the
// dbt commands that take them: a seed, a run and a test all succeed on
// Core (dbt refuses --empty in seed and test, "No such option"), and the
// run read its refs empty.
func TestCommandFlags(t *testing.T) {
	c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{
		Project: dbttest.Project(t, "shop"), WorkDir: t.TempDir(), Logger: testLogger(t),
		ExtraArgs: []string{"--sample", "3 days"},
	}})
	require.NoError(t, err)
	defer c.Close()
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)
	window := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		cmd executor.Command
		id  string
	}{
		{executor.Seed, "seed.shop.customers"},
		{executor.Run, "model.shop.stg_customers"},
		{executor.Test, "test.shop.not_null_stg_customers_customer_id.e2cfb1f9aa"},
	} {
		n := m.Lookup(step.id)
		require.NotNil(t, n, step.id)
		resp, err := c.Execute(t.Context(), executor.Request{Command: step.cmd, Nodes: []*manifest.Node{n}, Attempt: 1,
			Empty: true, EventTimeStart: window, EventTimeEnd: window.AddDate(0, 1, 0)})
		require.NoError(t, err)
		r := resp.Results[0]
		require.Equal(t, executor.Success, r.Status, "%s: %s", step.id, r.Message)
		args := strings.Join(resp.Invocation.Args, " ")
		if step.cmd == executor.Run {
			assert.Contains(t, args, "--empty --event-time-start 2024-01-01T00:00:00 --event-time-end 2024-02-01T00:00:00 --sample 3 days")
			assert.Contains(t, r.CompiledCode, "limit 0", "--empty reached the run")
		} else {
			for _, f := range []string{"--empty", "--sample", "--event-time"} {
				assert.NotContains(t, args, f, step.id)
			}
		}
	}
}
