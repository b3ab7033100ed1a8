package cache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/blobstore"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// BenchmarkCacheShop measures, in one run on the shop project with real
// dbt on DuckDB (warm executor; every node, tests included), the wall
// time of a cold build that fills the cache against an unchanged rerun
// served from it (its hits confirmed against the warehouse: one relation
// listing): first with the parsed manifest in hand (the orchestrated build
// alone) on a local directory, then the same through an S3 bucket on a
// loopback SeaweedFS server, then end to end including a fresh executor's
// parse of the project.
func BenchmarkCacheShop(b *testing.B) {
	project := dbttest.CopyProject(b, "shop")
	env := dbttest.Env(b, project)
	out, err := dbttest.Run(b, project, env, "deps")
	require.NoError(b, err, out)
	ctx := b.Context()
	cacheDir := filepath.Join(b.TempDir(), "cache")

	workDir := b.TempDir()
	startExec := func() *executor.Warm {
		w, err := executor.NewWarm(executor.WarmConfig{
			Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(b), Dir: project, Env: env},
				NoDeps:  true,
				WorkDir: workDir,
			},
			Workers: 1,
		})
		require.NoError(b, err)
		b.Cleanup(func() { w.Close() })
		return w
	}
	newExec := func() (*executor.Warm, *manifest.Manifest, *manifest.Graph) {
		w := startExec()
		m, err := w.Manifest(ctx)
		require.NoError(b, err)
		g, err := manifest.NewGraph(m)
		require.NoError(b, err)
		return w, m, g
	}
	local := cache.NewStore(afero.NewOsFs(), cacheDir, cache.StoreOptions{})
	buildOn := func(store *cache.Store, ex executor.Executor, m *manifest.Manifest, g *manifest.Graph) (*orchestrator.Run, int) {
		sess, err := cache.New(store, cache.Options{}).Open(m, g, cache.KeyConfig{Project: dbt.Project{Dir: project, Env: env, Target: "dev"}, CacheIncremental: true, CacheSnapshots: true})
		require.NoError(b, err)
		rec := &recorder{Executor: ex}
		o, err := orchestrator.New(orchestrator.Config{Executor: rec, Manifest: m, Concurrency: 1, Cache: orchcache.NewBuild(sess, orchcache.Options{Relations: rec})})
		require.NoError(b, err)
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
		require.NoError(b, err)
		return run, len(rec.take())
	}
	build := func(ex executor.Executor, m *manifest.Manifest, g *manifest.Graph) (*orchestrator.Run, int) {
		return buildOn(local, ex, m, g)
	}
	s3 := dbttest.StartSeaweed(b)
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	remote, closeRemote, err := blobstore.Open(ctx, s3.URL("bench"), cache.StoreOptions{})
	require.NoError(b, err)
	b.Cleanup(func() { closeRemote.Close() })

	for b.Loop() {
		start := time.Now()
		w, m, g := newExec()
		parseTime := time.Since(start)
		start = time.Now()
		cold, coldInv := build(w, m, g)
		coldTime := time.Since(start)
		require.Zero(b, cold.Count(orchestrator.Cached))

		start = time.Now()
		warm, warmInv := build(w, m, g)
		warmTime := time.Since(start)
		requireServed(b, warm)

		// The same through the S3 bucket: a cold build into an empty
		// prefix, then the unchanged rerun.
		start = time.Now()
		s3Cold, _ := buildOn(remote, w, m, g)
		s3ColdTime := time.Since(start)
		require.Zero(b, s3Cold.Count(orchestrator.Cached))
		start = time.Now()
		s3Warm, s3WarmInv := buildOn(remote, w, m, g)
		s3WarmTime := time.Since(start)
		requireServed(b, s3Warm)

		// The worker's manifest, kept below, before the worker goes.
		files, err := filepath.Glob(filepath.Join(workDir, "*", "worker-*", "target", "manifest.json"))
		require.NoError(b, err)
		require.NotEmpty(b, files)
		data, err := os.ReadFile(files[0])
		require.NoError(b, err)
		// One DuckDB file takes one process: the next executor's relation
		// listing needs the first one gone.
		w.Close()
		start = time.Now()
		w2, m2, g2 := newExec()
		_, e2eInv := build(w2, m2, g2)
		e2eTime := time.Since(start)
		w2.Close()

		// Keep the parsed manifest under the project's fingerprint (the
		// warm executor's own manifest.json stands in until executors
		// expose their manifest's bytes), then rerun end to end without
		// parsing: fingerprint, kept manifest, keys, lookups; the executor
		// is created but never started.
		fpOpts := cache.FingerprintOptions{Project: dbt.Project{Dir: project, Env: env, Target: "dev"}}
		fp, err := cache.Fingerprint(fpOpts)
		require.NoError(b, err)
		store := local
		require.NoError(b, store.PutManifest(ctx, fp, data))

		start = time.Now()
		fp, err = cache.Fingerprint(fpOpts)
		require.NoError(b, err)
		kept, ok := store.Manifest(ctx, fp)
		require.True(b, ok)
		m3, err := manifest.Parse(kept)
		require.NoError(b, err)
		g3, err := manifest.NewGraph(m3)
		require.NoError(b, err)
		kRun, keptInv := build(startExec(), m3, g3)
		keptTime := time.Since(start)
		requireServed(b, kRun)

		b.ReportMetric(coldTime.Seconds(), "cold-s")
		b.ReportMetric(warmTime.Seconds(), "rerun-s")
		b.ReportMetric(warmTime.Seconds()/coldTime.Seconds()*100, "rerun-%-of-cold")
		b.ReportMetric(float64(warmInv), "rerun-dbt-nodes")
		b.ReportMetric(s3WarmTime.Seconds()/s3ColdTime.Seconds()*100, "s3-rerun-%-of-s3-cold")
		b.ReportMetric(s3WarmTime.Seconds()/coldTime.Seconds()*100, "s3-rerun-%-of-cold")
		b.Logf("through S3 (SeaweedFS on loopback): cold %s, unchanged rerun %s = %.2f%% of it (%.2f%% of the local cold build), %d dbt node runs",
			s3ColdTime.Round(time.Millisecond), s3WarmTime.Round(time.Millisecond), s3WarmTime.Seconds()/s3ColdTime.Seconds()*100,
			s3WarmTime.Seconds()/coldTime.Seconds()*100, s3WarmInv)
		coldE2E := parseTime + coldTime
		b.ReportMetric(e2eTime.Seconds()/coldE2E.Seconds()*100, "rerun+parse-%-of-cold+parse")
		b.ReportMetric(keptTime.Seconds()/coldE2E.Seconds()*100, "rerun+kept-manifest-%-of-cold+parse")
		b.Logf("end to end with the kept manifest (no parse, no dbt process): rerun %s = %.2f%% of cold, %d dbt node runs",
			keptTime.Round(time.Microsecond), keptTime.Seconds()/coldE2E.Seconds()*100, keptInv)
		b.Logf("shop, %d nodes: cold build %s (%d dbt node runs); unchanged rerun %s = %.2f%% of cold, %d dbt node runs; "+
			"with the executor's parse of the project: cold %s, rerun %s = %.1f%% of cold, %d dbt node runs",
			len(cold.Results), coldTime.Round(time.Millisecond), coldInv, warmTime.Round(time.Microsecond),
			warmTime.Seconds()/coldTime.Seconds()*100, warmInv, coldE2E.Round(time.Millisecond), e2eTime.Round(time.Millisecond),
			e2eTime.Seconds()/coldE2E.Seconds()*100, e2eInv)
	}
}

// requireServed checks that an unchanged rerun served every node from the
// cache, tests and unit tests included.
func requireServed(b *testing.B, run *orchestrator.Run) {
	b.Helper()
	for _, r := range run.Results {
		require.Equal(b, orchestrator.Cached, r.Status, "%s: %s", r.UniqueID, r.CacheReason)
	}
}
