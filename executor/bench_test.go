package executor_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/projgen"
	"github.com/dbtorch/dbtorch/manifest"
)

// BenchmarkPerNodeOverhead measures what running a project one node per
// invocation costs with each executor, against one `dbt build --threads 1`
// of the same nodes in the same run: on testdata/shop and on a generated
// 50-model project, both on DuckDB. Each of the three runs gets its own
// DuckDB file; executors are prepared (deps, parse, workers started)
// before the clock starts, and dbt build runs after a `dbt parse`, so all
// three start from a parsed project. dbt build runs before and after the
// executors; the reference is the mean of the two.
//
// The Core executor runs only with DBTORCH_BENCH_CORE=1 in the
// environment, and never with -short: at 3-5 s a node it took ~11 of the
// 12 minutes of a whole `make bench`. Without it only warm/build is
// reported; with it also core/build and core/warm.
//
// Reported: warm/build (wall time over dbt build's), core/build and
// core/warm when Core ran, and the wall seconds of each.
func BenchmarkPerNodeOverhead(b *testing.B) {
	projects := []struct {
		name  string
		setup func(b *testing.B) string
	}{
		{"shop", func(b *testing.B) string { return dbttest.CopyProject(b, "shop") }},
		{"gen50", func(b *testing.B) string {
			dir := filepath.Join(b.TempDir(), "gen50")
			require.NoError(b, projgen.Write(dir, projgen.Options{Models: 50, Seed: 1}))
			return dir
		}},
	}
	for _, p := range projects {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				benchProject(b, p.setup(b))
			}
		})
	}
}

func benchProject(b *testing.B, dir string) {
	dbtPath := dbttest.DBT(b)
	ctx := b.Context()

	// Baseline: dbt build --threads 1 after deps and parse, on a fresh
	// database, once before and once after the executors; the mean is the
	// reference, so that a change of the machine's load during the run
	// weighs on both sides.
	dbttest.Parse(b, dir, dbttest.Env(b, dir))
	dbtBuild := func() time.Duration {
		b.Helper()
		start := time.Now()
		out, err := dbttest.Run(b, dir, dbttest.Env(b, dir), "build", "--threads", "1")
		require.NoError(b, err, out)
		return time.Since(start)
	}
	build1 := dbtBuild()

	run := func(ex executor.Executor, m *manifest.Manifest) (time.Duration, int) {
		b.Helper()
		g, err := manifest.NewGraph(m)
		require.NoError(b, err)
		plan := g.Plan(nil, manifest.Immediate)
		start := time.Now()
		for _, id := range plan.Nodes() {
			n := m.Lookup(id)
			resp, err := ex.Execute(ctx, executor.Request{Command: executor.CommandFor(n.ResourceType), Nodes: []*manifest.Node{n}, Attempt: 1, BuildID: "bench"})
			require.NoError(b, err)
			if r := resp.Results[0]; r.Status != executor.Success {
				b.Errorf("%s: %s %s: %s", id, r.Status, r.Kind, r.Message)
			}
		}
		return time.Since(start), plan.Len()
	}

	var m *manifest.Manifest
	var coreWall time.Duration
	if benchCore() {
		core, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: dbtPath, Dir: dir, Env: dbttest.Env(b, dir)}, WorkDir: b.TempDir()}})
		require.NoError(b, err)
		defer core.Close()
		m, err = core.Manifest(ctx)
		require.NoError(b, err)
		coreWall, _ = run(core, m)
	}

	warm, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: dbt.Project{DBT: dbtPath, Dir: dir, Env: dbttest.Env(b, dir)}, WorkDir: b.TempDir()}, Workers: 1})
	require.NoError(b, err)
	defer warm.Close()
	prepStart := time.Now()
	require.NoError(b, warm.Prepare(ctx))
	warmStart := time.Since(prepStart)
	if m == nil {
		m, err = warm.Manifest(ctx)
		require.NoError(b, err)
	}
	warmWall, nodes := run(warm, m)
	build2 := dbtBuild()
	build := (build1 + build2) / 2

	b.ReportMetric(float64(nodes), "nodes")
	b.ReportMetric(build.Seconds(), "build_s")
	b.ReportMetric(warmWall.Seconds(), "warm_s")
	b.ReportMetric(warmWall.Seconds()/build.Seconds(), "warm/build")
	if coreWall > 0 {
		b.ReportMetric(coreWall.Seconds(), "core_s")
		b.ReportMetric(coreWall.Seconds()/build.Seconds(), "core/build")
		b.ReportMetric(coreWall.Seconds()/warmWall.Seconds(), "core/warm")
	}
	b.Logf("%d nodes one invocation at a time in plan order: dbt build --threads 1 %.1fs (%.1fs before, %.1fs after); warm %.1fs (%.2fx build, %.0fms/node; workers started in %.1fs)",
		nodes, build.Seconds(), build1.Seconds(), build2.Seconds(),
		warmWall.Seconds(), warmWall.Seconds()/build.Seconds(), warmWall.Seconds()*1000/float64(nodes), warmStart.Seconds())
	if coreWall > 0 {
		b.Logf("core %.1fs (%.2fx build, %.0fms/node); core/warm %.2fx",
			coreWall.Seconds(), coreWall.Seconds()/build.Seconds(), coreWall.Seconds()*1000/float64(nodes), coreWall.Seconds()/warmWall.Seconds())
	}
}

// benchCore reports whether BenchmarkPerNodeOverhead runs the Core
// executor: DBTORCH_BENCH_CORE=1 and not -short.
func benchCore() bool {
	return os.Getenv("DBTORCH_BENCH_CORE") == "1" && !testing.Short()
}
