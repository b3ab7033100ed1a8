package selector

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/projgen"
	"github.com/dbtorch/dbtorch/manifest"
)

// typical are selections users pass every day.
var typical = []Options{
	{},
	{Select: []string{"stg_orders+"}},
	{Select: []string{"tag:marts"}, Exclude: []string{"tag:finance"}},
	{Select: []string{"+fct_orders,resource_type:model"}},
	{Select: []string{"path:models/staging"}},
	{Select: []string{"@dim_customers"}, Indirect: Cautious},
	{Select: []string{"config.materialized:table source:raw+"}},
	{Select: []string{"test_type:unit test_name:unique"}},
}

// BenchmarkResolve times the native resolver against `dbt ls` on the shop
// project in the same run: one dbt process per selection (what other
// orchestrators do) and dbt's warm programmatic runner (parse once), and
// requires identical results.
func BenchmarkResolve(b *testing.B) {
	dir, env := shopProject(b)
	p := prepare(b, dir, env)
	cold := NewDBTLs(dbttest.DBT(b), dir)
	cold.ProfilesDir, cold.Env = dir, env
	ctx := context.Background()

	// dbt ls, one process per selection, on three of the selections
	var coldTotal time.Duration
	for _, o := range typical[:3] {
		start := time.Now()
		want, err := cold.Resolve(ctx, o)
		coldTotal += time.Since(start)
		require.NoError(b, err)
		got, err := p.native.Resolve(ctx, o)
		require.NoError(b, err)
		require.Empty(b, cmp.Diff(want, got))
	}
	coldPer := coldTotal / 3

	var warmTotal time.Duration
	for _, o := range typical {
		start := time.Now()
		want, err := p.dbt.Resolve(ctx, o)
		warmTotal += time.Since(start)
		require.NoError(b, err)
		got, err := p.native.Resolve(ctx, o)
		require.NoError(b, err)
		require.Empty(b, cmp.Diff(want, got))
	}
	warmPer := warmTotal / time.Duration(len(typical))

	nativePer := timeNative(b, p.native)
	b.ReportMetric(float64(nativePer.Nanoseconds())/1e3, "native-µs/sel")
	b.ReportMetric(coldPer.Seconds(), "dbt-ls-s/sel")
	b.ReportMetric(float64(coldPer)/float64(nativePer), "x-vs-dbt-ls")
	b.ReportMetric(float64(warmPer)/float64(nativePer), "x-vs-warm-dbt")
	b.Logf("shop (%d nodes): native %s/selection, dbt ls %s/selection (%.0fx), warm dbtRunner %s/selection (%.0fx); results identical",
		len(p.native.d.ids), nativePer, coldPer.Round(time.Millisecond), float64(coldPer)/float64(nativePer),
		warmPer.Round(time.Millisecond), float64(warmPer)/float64(nativePer))
}

// BenchmarkResolveLarge times the native resolver on generated manifests
// too large to ask dbt about in a benchmark.
func BenchmarkResolveLarge(b *testing.B) {
	for _, models := range []int{1000, 5000} {
		var buf bytes.Buffer
		require.NoError(b, projgen.WriteManifest(&buf, projgen.ManifestOptions{Models: models, Seed: 1}))
		m, err := manifest.Parse(buf.Bytes())
		require.NoError(b, err)
		start := time.Now()
		n := nativeOf(b, m)
		n.d.g.SelectionParents(0) // the selection edges are built on first use: count them
		setup := time.Since(start)
		sels := []Options{{}, {Select: []string{"tag:*"}}, {Select: []string{"+tag:mart*"}}, {Select: []string{"source:*+"}, Indirect: Buildable},
			{Select: []string{"config.materialized:ephemeral+"}}, {Select: []string{"path:models"}}}
		var total time.Duration
		const rounds = 5
		for range rounds {
			for _, o := range sels {
				t0 := time.Now()
				_, err := n.Resolve(context.Background(), o)
				total += time.Since(t0)
				require.NoError(b, err)
			}
		}
		per := total / time.Duration(rounds*len(sels))
		b.ReportMetric(float64(per.Nanoseconds())/1e3, "native-µs/sel-"+strconv.Itoa(models))
		b.Logf("%d models (%d nodes): setup %s, native %s/selection", models, len(n.d.ids), setup.Round(time.Microsecond), per.Round(time.Microsecond))
	}
}

// timeNative returns the mean time of one native resolution of the
// typical selections (after a warm-up round).
func timeNative(tb testing.TB, n *Native) time.Duration {
	ctx := context.Background()
	for _, o := range typical {
		_, err := n.Resolve(ctx, o)
		require.NoError(tb, err)
	}
	const rounds = 50
	start := time.Now()
	for range rounds {
		for _, o := range typical {
			if _, err := n.Resolve(ctx, o); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return time.Since(start) / time.Duration(rounds*len(typical))
}
