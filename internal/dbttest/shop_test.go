package dbttest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// readJSON decodes the JSON file at path into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, v))
}

// TestShopBuildBrokenModel builds the shop project with real dbt on DuckDB
// with the broken_model switch on. The nodes other packages' tests name
// exist, and every node passes except customer_revenue (error) and its two
// descendants (skipped): 43 results from 15 models (one ephemeral), 5 seeds,
// 1 snapshot, 22 data tests and 1 unit test.
func TestShopBuildBrokenModel(t *testing.T) {
	t.Parallel()
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	out, err := dbttest.Run(t, dir, env, "deps")
	require.NoError(t, err, out)
	out, err = dbttest.Run(t, dir, env, "build", "--vars", "{broken_model: true}")
	require.Error(t, err, "the build must fail")
	assert.Contains(t, out, "column_that_does_not_exist")

	var manifest struct {
		Nodes map[string]struct {
			ResourceType  string `json:"resource_type"`
			LatestVersion any    `json:"latest_version"`
			Language      string `json:"language"`
			Config        struct {
				Materialized string `json:"materialized"`
			} `json:"config"`
			DependsOn struct {
				Nodes []string `json:"nodes"`
			} `json:"depends_on"`
		} `json:"nodes"`
		Sources map[string]struct {
			Freshness *struct {
				WarnAfter struct {
					Count *int `json:"count"`
				} `json:"warn_after"`
			} `json:"freshness"`
			LoadedAtField string `json:"loaded_at_field"`
		} `json:"sources"`
		UnitTests map[string]any `json:"unit_tests"`
	}
	readJSON(t, filepath.Join(dir, "target", "manifest.json"), &manifest)

	for _, id := range []string{
		"model.shop.dim_customers.v1", "model.shop.dim_customers.v2",
		"model.shop_pkg.pkg_order_status_counts", "model.shop.flaky_events",
		"model.shop.customer_revenue", "snapshot.shop.orders_snapshot",
		"test.shop.assert_order_amounts_non_negative", "seed.shop.raw_events",
	} {
		assert.Contains(t, manifest.Nodes, id)
	}
	assert.EqualValues(t, 2, manifest.Nodes["model.shop.dim_customers.v1"].LatestVersion)
	assert.Equal(t, "python", manifest.Nodes["model.shop.flaky_events"].Language)
	assert.Equal(t, "ephemeral", manifest.Nodes["model.shop.int_order_payments"].Config.Materialized)
	assert.Equal(t, "incremental", manifest.Nodes["model.shop.payments_incremental"].Config.Materialized)
	assert.ElementsMatch(t, []string{"model.shop.fct_orders", "model.shop.dim_customers.v2"},
		manifest.Nodes["test.shop.relationships_fct_orders_customer_id__customer_id__ref_dim_customers_.d5636051d4"].DependsOn.Nodes)
	assert.ElementsMatch(t, []string{"source.shop.raw.events", "seed.shop.raw_events"},
		manifest.Nodes["model.shop.stg_events"].DependsOn.Nodes)
	assert.Contains(t, manifest.UnitTests, "unit_test.shop.fct_orders.fct_orders_sums_payments")
	require.Contains(t, manifest.Sources, "source.shop.raw.events")
	events := manifest.Sources["source.shop.raw.events"]
	assert.Equal(t, "loaded_at", events.LoadedAtField)
	require.NotNil(t, events.Freshness)
	require.NotNil(t, events.Freshness.WarnAfter.Count)
	assert.Equal(t, 36500, *events.Freshness.WarnAfter.Count)
	require.Contains(t, manifest.Sources, "source.shop.crm.customer_notes")
	notes := manifest.Sources["source.shop.crm.customer_notes"]
	assert.Empty(t, notes.LoadedAtField)
	if notes.Freshness != nil { // dbt writes empty thresholds rather than null
		assert.Nil(t, notes.Freshness.WarnAfter.Count)
	}

	var results struct {
		Results []struct {
			UniqueID string `json:"unique_id"`
			Status   string `json:"status"`
		} `json:"results"`
	}
	readJSON(t, filepath.Join(dir, "target", "run_results.json"), &results)
	byStatus := map[string][]string{}
	for _, r := range results.Results {
		byStatus[r.Status] = append(byStatus[r.Status], r.UniqueID)
	}
	assert.Equal(t, []string{"model.shop.customer_revenue"}, byStatus["error"])
	assert.ElementsMatch(t, []string{
		"model.shop.revenue_by_segment",
		"test.shop.unique_customer_revenue_customer_id.3b4be2f107",
	}, byStatus["skipped"])
	assert.Len(t, byStatus["success"], 18, "5 seeds, 12 models, 1 snapshot")
	assert.Len(t, byStatus["pass"], 22, "21 data tests and 1 unit test")
	assert.Len(t, results.Results, 43)
	for status := range byStatus {
		assert.Contains(t, []string{"success", "pass", "error", "skipped"}, status, strings.Join(byStatus[status], " "))
	}
}
