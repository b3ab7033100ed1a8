package executor_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestWarmKeepsRelationCache runs one sequence of invocations on shop
// through a one-worker Warm executor, patched and unpatched, and reads
// from each invocation's dbt log whether dbt listed the schema's
// relations. Patched, the worker keeps dbt's relation cache within a build
// (keep_relation_cache in internal/pyworker/worker.py): after the seeds'
// listing nothing is listed again until a failed invocation, and a table
// model run a second time in the build succeeds (its relation, created in
// the invocation before, is in the kept cache, or dbt would create it over
// the existing table); a failed invocation and a new build list afresh.
// Unpatched lists in every invocation. Both report the same statuses.
func TestWarmKeepsRelationCache(t *testing.T) {
	t.Parallel()
	type step struct {
		build, cmd string
		ids        []string
		listed     bool // patched: dbt listed relations in this invocation
	}
	fct := "model.shop.fct_orders"
	steps := []step{
		{"b1", "seed", nil, true},
		{"b1", "run", []string{"model.shop.stg_customers", "model.shop.stg_orders", "model.shop.stg_payments"}, false},
		{"b1", "run", []string{fct}, false},
		{"b1", "test", []string{"test.shop.unique_fct_orders_order_id"}, false}, // a prefix
		{"b1", "run", []string{fct}, false},
		{"b1", "run", []string{"model.shop.customer_revenue"}, false}, // fails: drops the cache
		{"b1", "run", []string{fct}, true},
		{"b2", "run", []string{fct}, true},
		{"b2", "run", []string{fct}, false},
	}
	type outcome struct {
		statuses []string
		listed   []bool
	}
	run := func(t *testing.T, unpatched bool) outcome {
		dir := dbttest.CopyProject(t, "shop")
		w, err := executor.NewWarm(executor.WarmConfig{
			Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: dbttest.Env(t, dir),
				Vars: map[string]any{"broken_model": true}},
				WorkDir: t.TempDir(), KeepArtifacts: true, Logger: testLogger(t)},
			Workers:   1,
			Unpatched: unpatched,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, w.Close()) })
		m, err := w.Manifest(t.Context())
		require.NoError(t, err)
		var o outcome
		for i, s := range steps {
			var ns []*manifest.Node
			switch s.cmd {
			case "seed":
				ns = ofType(t, m, manifest.Seed)
			case "test":
				for _, n := range ofType(t, m, manifest.Test) {
					if strings.HasPrefix(n.UniqueID, s.ids[0]+".") {
						ns = append(ns, n)
					}
				}
				require.Len(t, ns, 1)
			default:
				ns = nodes(t, m, s.ids...)
			}
			resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Command(s.cmd), Nodes: ns, Attempt: 1, BuildID: s.build})
			require.NoError(t, err)
			var st []string
			for _, r := range resp.Results {
				st = append(st, string(r.Status))
			}
			o.statuses = append(o.statuses, strings.Join(st, ","))
			at := slices.Index(resp.Invocation.Args, "--log-path")
			require.GreaterOrEqual(t, at, 0, "step %d", i)
			log, err := os.ReadFile(filepath.Join(resp.Invocation.Args[at+1], "dbt.log"))
			require.NoError(t, err)
			o.listed = append(o.listed, strings.Contains(string(log), "connection 'list_"))
		}
		return o
	}
	var patched, unpatched outcome
	t.Run("patched", func(t *testing.T) { t.Parallel(); patched = run(t, false) })
	t.Run("unpatched", func(t *testing.T) { t.Parallel(); unpatched = run(t, true) })
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		var want []bool
		for _, s := range steps {
			want = append(want, s.listed)
		}
		assert.Equal(t, want, patched.listed, "patched: which invocations listed relations")
		for i, s := range steps {
			assert.Equal(t, s.cmd != "test", unpatched.listed[i], "unpatched: every run and seed lists (step %d)", i)
		}
		assert.Equal(t, unpatched.statuses, patched.statuses)
		assert.Equal(t, "error", patched.statuses[5], "customer_revenue fails")
		for i, st := range patched.statuses {
			if i != 5 {
				assert.NotContains(t, st, "error", "step %d", i)
			}
		}
	})
}
