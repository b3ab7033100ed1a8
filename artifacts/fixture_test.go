package artifacts_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// t0 is the fixture build's start; every time in the fixture is an offset
// from it, so golden files are stable.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func i64(v int64) *int64 { return &v }

// fixtureManifest is a small project with one node of each outcome:
//
//	seed customers -> stg_customers -> customer_revenue (error) -> revenue_by_segment (skipped)
//	seed orders -> fct_orders (cached) -> customer_revenue; orders_snapshot <- orders
//	tests: not_null_stg_customers (pass), accepted_values_stg_customers (warn),
//	assert_orders_positive on fct_orders (fail, severity warn... error),
//	unique_customer_revenue (skipped)
func fixtureManifest() *manifest.Manifest {
	m := &manifest.Manifest{
		Metadata: manifest.Metadata{DBTVersion: "1.11.16", ProjectName: "shop", AdapterType: "duckdb", InvocationID: "parse-invocation"},
		Nodes:    map[string]*manifest.Node{},
		Sources:  map[string]*manifest.Node{},
	}
	add := func(n *manifest.Node) {
		n.Enabled = true
		n.PackageName = "shop"
		if n.Database == "" {
			n.Database = "shop"
			n.Schema = "main"
		}
		if n.ResourceType != manifest.Test {
			n.Alias = n.Name
			n.RelationName = `"shop"."main"."` + n.Name + `"`
		}
		if n.Config.IsZero() {
			n.Config = manifest.NewConfig(map[string]any{"materialized": n.Materialized})
		}
		if n.ResourceType == manifest.Source {
			m.Sources[n.UniqueID] = n
			return
		}
		m.Nodes[n.UniqueID] = n
	}
	add(&manifest.Node{UniqueID: "source.shop.raw.events", Name: "events", SourceName: "raw", Identifier: "raw_events", ResourceType: manifest.Source, FQN: []string{"shop", "raw", "events"}, OriginalFilePath: "models/staging/_sources.yml", Database: "shop", Schema: "main"})
	add(&manifest.Node{UniqueID: "seed.shop.customers", Name: "customers", ResourceType: manifest.Seed, Materialized: "seed", FQN: []string{"shop", "customers"}, OriginalFilePath: "seeds/customers.csv"})
	add(&manifest.Node{UniqueID: "seed.shop.orders", Name: "orders", ResourceType: manifest.Seed, Materialized: "seed", FQN: []string{"shop", "orders"}, OriginalFilePath: "seeds/orders.csv"})
	add(&manifest.Node{UniqueID: "model.shop.stg_customers", Name: "stg_customers", ResourceType: manifest.Model, Materialized: "view", FQN: []string{"shop", "staging", "stg_customers"}, OriginalFilePath: "models/staging/stg_customers.sql",
		DependsOn: manifest.DependsOn{Nodes: []string{"seed.shop.customers", "source.shop.raw.events"}}})
	add(&manifest.Node{UniqueID: "model.shop.fct_orders", Name: "fct_orders", ResourceType: manifest.Model, Materialized: "table", FQN: []string{"shop", "marts", "fct_orders"}, OriginalFilePath: "models/marts/fct_orders.sql",
		DependsOn: manifest.DependsOn{Nodes: []string{"seed.shop.orders"}}})
	add(&manifest.Node{UniqueID: "model.shop.int_customer_orders", Name: "int_customer_orders", ResourceType: manifest.Model, Materialized: "ephemeral", FQN: []string{"shop", "intermediate", "int_customer_orders"}, OriginalFilePath: "models/intermediate/int_customer_orders.sql",
		DependsOn: manifest.DependsOn{Nodes: []string{"seed.shop.orders"}}})
	add(&manifest.Node{UniqueID: "model.shop.customer_revenue", Name: "customer_revenue", ResourceType: manifest.Model, Materialized: "table", FQN: []string{"shop", "marts", "customer_revenue"}, OriginalFilePath: "models/marts/customer_revenue.sql",
		Description: "Revenue per customer.",
		DependsOn:   manifest.DependsOn{Nodes: []string{"model.shop.stg_customers", "model.shop.fct_orders", "model.shop.int_customer_orders"}}})
	add(&manifest.Node{UniqueID: "model.shop.revenue_by_segment", Name: "revenue_by_segment", ResourceType: manifest.Model, Materialized: "view", FQN: []string{"shop", "marts", "revenue_by_segment"}, OriginalFilePath: "models/marts/revenue_by_segment.sql",
		DependsOn: manifest.DependsOn{Nodes: []string{"model.shop.customer_revenue"}}})
	add(&manifest.Node{UniqueID: "snapshot.shop.orders_snapshot", Name: "orders_snapshot", ResourceType: manifest.Snapshot, Materialized: "snapshot", FQN: []string{"shop", "orders_snapshot"}, OriginalFilePath: "snapshots/orders_snapshot.yml",
		DependsOn: manifest.DependsOn{Nodes: []string{"seed.shop.orders"}}})
	test := func(id, name, attached, path string, severity string) {
		add(&manifest.Node{UniqueID: id, Name: name, ResourceType: manifest.Test, FQN: []string{"shop", "marts", name}, OriginalFilePath: path,
			Severity: severity, AttachedNode: attached, Config: manifest.NewConfig(map[string]any{"severity": severity}),
			DependsOn: manifest.DependsOn{Nodes: []string{attached}}})
	}
	test("test.shop.not_null_stg_customers_customer_id.e2cfb1f9aa", "not_null_stg_customers_customer_id", "model.shop.stg_customers", "models/staging/_staging.yml", "ERROR")
	test("test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e", "accepted_values_stg_customers_segment", "model.shop.stg_customers", "models/staging/_staging.yml", "WARN")
	test("test.shop.assert_orders_positive", "assert_orders_positive", "model.shop.fct_orders", "tests/assert_orders_positive.sql", "ERROR")
	test("test.shop.unique_customer_revenue_customer_id.3b4be2f107", "unique_customer_revenue_customer_id", "model.shop.customer_revenue", "models/marts/_marts.yml", "ERROR")
	return m
}

// fixtureRun returns a finished build of fixtureManifest with one node in
// each outcome dbtorch and dbt distinguish.
func fixtureRun(t testing.TB) *orchestrator.Run {
	t.Helper()
	m := fixtureManifest()
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	plan := g.Plan(nil, manifest.Immediate)
	waveOf := func(id string) int {
		i, ok := plan.Index(id)
		require.True(t, ok, id)
		return plan.Wave(i)
	}
	inv := func(cmd executor.Command, id string, start, end int) *executor.Invocation {
		return &executor.Invocation{Command: cmd, Args: []string{string(cmd), "--select", id}, InvocationID: "inv-" + id, Started: at(start), Ended: at(end)}
	}
	timing := func(start, end int) []executor.Timing {
		return []executor.Timing{{Name: "compile", StartedAt: at(start), CompletedAt: at(start + 5)}, {Name: "execute", StartedAt: at(start + 5), CompletedAt: at(end)}}
	}
	ran := func(id string, st orchestrator.Status, dbt string, start, end int) orchestrator.NodeResult {
		n := m.Lookup(id)
		cmd := executor.CommandFor(n.ResourceType)
		r := orchestrator.NodeResult{
			Result: executor.Result{UniqueID: id, DBTStatus: dbt, ExecutionTime: time.Duration(end-start) * time.Millisecond, ThreadID: "Thread-1 (worker)", Timing: timing(start, end), AdapterResponse: map[string]any{"_message": "OK"}}, Name: n.Name, ResourceType: n.ResourceType, Wave: waveOf(id), Status: st,
			StartedAt: at(start), CompletedAt: at(end),
			Attempts:   []orchestrator.Attempt{{Number: 1, StartedAt: at(start), CompletedAt: at(end), Status: executor.Status(st), Invocation: *inv(cmd, id, start, end)}},
			Invocation: inv(cmd, id, start, end),
		}
		if n.ResourceType != manifest.Seed {
			r.CompiledCode = "select * from " + id
		}
		if n.ResourceType == manifest.Model || n.ResourceType == manifest.Snapshot {
			r.RelationName = n.RelationName
		}
		return r
	}
	var results []orchestrator.NodeResult
	for _, id := range plan.Nodes() {
		var r orchestrator.NodeResult
		switch id {
		case "seed.shop.customers":
			r = ran(id, orchestrator.Success, "success", 10, 400)
			r.WaitTime = 10 * time.Millisecond
			r.AdapterResponse = map[string]any{"_message": "INSERT 5", "code": "INSERT", "rows_affected": int64(5)}
			r.RowsAffected, r.Message = i64(5), "INSERT 5"
		case "seed.shop.orders":
			r = ran(id, orchestrator.Success, "success", 12, 420)
			r.WaitTime = 12 * time.Millisecond
			r.AdapterResponse = map[string]any{"_message": "INSERT 8", "code": "INSERT", "rows_affected": int64(8)}
			r.RowsAffected, r.Message = i64(8), "INSERT 8"
		case "model.shop.stg_customers", "snapshot.shop.orders_snapshot":
			r = ran(id, orchestrator.Success, "success", 500, 800)
			r.Message = "OK"
			r.WaitTime = 80 * time.Millisecond // queued when its seed finished
			if id == "model.shop.stg_customers" {
				r.WaitTime = 100 * time.Millisecond
			}
		case "model.shop.fct_orders":
			n := m.Lookup(id)
			r = orchestrator.NodeResult{Result: executor.Result{UniqueID: id, Message: "cached"}, Name: n.Name, ResourceType: n.ResourceType, Wave: waveOf(id), Status: orchestrator.Cached, CacheKey: "5f1c0ffee",
				StartedAt: at(425), CompletedAt: at(425), WaitTime: 5 * time.Millisecond,
				Saved: &orchestrator.SavedRun{ExecutionTime: 250 * time.Millisecond, RowsAffected: i64(8), AdapterResponse: map[string]any{"_message": "OK"}}}
		case "test.shop.not_null_stg_customers_customer_id.e2cfb1f9aa":
			r = ran(id, orchestrator.Success, "pass", 900, 950)
			r.Failures = i64(0)
		case "test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e":
			r = ran(id, orchestrator.Success, "warn", 900, 960)
			r.Failures, r.Message = i64(2), "Got 2 results, configured to warn if != 0"
		case "test.shop.assert_orders_positive":
			r = ran(id, orchestrator.Error, "fail", 430, 470)
			r.Failures, r.Message = i64(3), "Got 3 results, configured to fail if != 0"
			r.Err = &orchestrator.NodeError{Kind: executor.KindTestFailure, Message: r.Message}
		case "model.shop.customer_revenue":
			r = ran(id, orchestrator.Error, "error", 1000, 1100)
			r.AdapterResponse = map[string]any{}
			r.Message = "Runtime Error in model customer_revenue (models/marts/customer_revenue.sql)\n  Binder Error: column \"nope\" <not> found & \"quoted\""
			r.Err = &orchestrator.NodeError{Kind: executor.KindDatabase, Message: r.Message}
			r.Attempts = append([]orchestrator.Attempt{{Number: 1, StartedAt: at(980), CompletedAt: at(990), Status: executor.Error, Kind: executor.KindConnection, Message: "connection reset"}}, r.Attempts...)
			r.Attempts[1].Number = 2
			r.StartedAt = at(980)
			r.WaitTime = 30 * time.Millisecond // 20ms queued after its last upstream (a test), 10ms before the retry
		case "model.shop.revenue_by_segment", "test.shop.unique_customer_revenue_customer_id.3b4be2f107":
			n := m.Lookup(id)
			r = orchestrator.NodeResult{
				Result: executor.Result{UniqueID: id}, Name: n.Name, ResourceType: n.ResourceType, Wave: waveOf(id), Status: orchestrator.Skipped,
				SkipReason: "upstream failed", FailedUpstream: []string{"model.shop.customer_revenue"},
			}
		default:
			t.Fatalf("fixture: unexpected planned node %s", id)
		}
		results = append(results, r)
	}
	return &orchestrator.Run{
		ID:          "0f8fad5b-d9cb-469f-a165-70867728950e",
		StartedAt:   t0,
		CompletedAt: at(1200),
		Manifest:    m,
		Plan:        plan,
		Args:        map[string]any{"select": []string{}, "exclude": []string{}, "vars": map[string]any{}, "full_refresh": false, "threads": 4},
		Results:     results,
	}
}
