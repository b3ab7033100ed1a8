package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/projgen"
)

// BenchmarkCommandBuild measures whole commands as a user runs them: the
// built `dbtorch build` binary (its start-up, the warm workers' start-up
// and parse included) against `dbt build`, each on a fresh copy of the
// same generated project (no target/, no partial parse), same target, same
// run. `dbt build` runs before and after the dbtorch builds; ratios are
// against the mean of the two.
//
//   - gen50-pg: 50 models on PostgreSQL, `dbt build --threads 4` against
//     per-node (`--concurrency 4`, 4 warm workers) and per-wave
//     (`--mode per-wave --workers 1 --threads 4`); after one untimed dbt
//     build that creates the schemas and relations.
//   - gen1000-duckdb (only with DBTORCH_BENCH_LARGE=1: ~10 min on two
//     loaded cores): 1,000 models on DuckDB, each command on its own new
//     database file; per-node runs one warm worker (one DuckDB writer).
//
// Also reported: the time from the dbtorch command's start to its first
// node's start against one `dbt parse` of a fresh copy and one `dbt
// --version` (Python and dbt's import), and the warm per-node overhead (a
// node's wall time in dbtorch minus dbt's own execution time of it, the
// median over the nodes: the mean would count the first nodes' wait for
// the workers still starting), whose
// growth with the project's size is the other half of issue 17.
func BenchmarkCommandBuild(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "dbtorch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	dbtBin := dbttest.DBT(b)
	b.Run("gen50-pg", func(b *testing.B) {
		pg := dbttest.StartPostgres(b)
		benchCommands(b, bin, dbtBin, 50, pg.Env(), []string{"--target", "pg"}, "4")
	})
	b.Run("gen1000-duckdb", func(b *testing.B) {
		if os.Getenv("DBTORCH_BENCH_LARGE") == "" {
			b.Skip("set DBTORCH_BENCH_LARGE=1 for the 1,000-model project")
		}
		benchCommands(b, bin, dbtBin, 1000, nil, nil, "4")
	})
}

// benchCommands runs one round of BenchmarkCommandBuild on a generated
// project of models models; extraEnv and target select the target.
func benchCommands(b *testing.B, bin, dbtBin string, models int, extraEnv, target []string, threads string) {
	// fresh writes a new copy of the project (the same seed: the same
	// project) and its environment (on DuckDB: a new database file).
	fresh := func() (string, []string) {
		dir := filepath.Join(b.TempDir(), "gen")
		if err := projgen.Write(dir, projgen.Options{Models: models, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		env := append(append(dbttest.Env(b, dir), extraEnv...), "DBTORCH_DBT="+dbtBin)
		return dir, env
	}
	run := func(name string, dir string, env []string, args ...string) time.Duration {
		b.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = dir, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", name, err, tail(out, 4000))
		}
		return d
	}
	dbtBuild := func() time.Duration {
		dir, env := fresh()
		return run("dbt build", dir, env, append([]string{dbtBin, "build", "--threads", threads}, target...)...)
	}
	type outcome struct {
		wall, firstStart, overhead time.Duration
		nodes                      int
	}
	dbtorch := func(args ...string) outcome {
		dir, env := fresh()
		results := filepath.Join(b.TempDir(), "results.json")
		args = append(append([]string{bin, "build", "--quiet", "--results", results}, target...), args...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = dir, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(start)
		if err != nil {
			b.Fatalf("dbtorch build: %v\n%s", err, tail(out, 4000))
		}
		data, err := os.ReadFile(results)
		if err != nil {
			b.Fatal(err)
		}
		var rj artifacts.RunJSON
		if err := json.Unmarshal(data, &rj); err != nil {
			b.Fatal(err)
		}
		o := outcome{wall: wall, nodes: len(rj.Results)}
		var first time.Time
		var over []time.Duration
		for _, r := range rj.Results {
			if r.StartedAt == nil || r.CompletedAt == nil {
				continue
			}
			s, err1 := time.Parse(time.RFC3339Nano, *r.StartedAt)
			c, err2 := time.Parse(time.RFC3339Nano, *r.CompletedAt)
			if err1 != nil || err2 != nil {
				b.Fatalf("%s: times %q %q", r.UniqueID, *r.StartedAt, *r.CompletedAt)
			}
			if first.IsZero() || s.Before(first) {
				first = s
			}
			over = append(over, c.Sub(s)-time.Duration(r.ExecutionSeconds*float64(time.Second)))
		}
		o.firstStart = first.Sub(start)
		if len(over) > 0 {
			slices.Sort(over)
			o.overhead = over[len(over)/2]
		}
		return o
	}
	if len(target) > 0 {
		dbtBuild() // create the schemas and relations once, untimed
	}
	for b.Loop() {
		dir, env := fresh()
		version := run("dbt --version", dir, env, dbtBin, "--version")
		parse := run("dbt parse", dir, env, append([]string{dbtBin, "parse"}, target...)...)
		d1 := dbtBuild()
		pn := dbtorch("--concurrency", threads)
		var pw outcome
		if len(target) > 0 {
			pw = dbtorch("--mode", "per-wave", "--workers", "1", "--threads", threads)
		} else {
			pw = dbtorch("--mode", "per-wave", "--threads", threads)
		}
		d2 := dbtBuild()
		d := (d1 + d2) / 2
		b.Logf("%d models, %d nodes: dbt build --threads %s %v, %v (mean %v); dbtorch build per-node %v (first node at %v, overhead %v/node); per-wave %v (first node at %v); dbt --version %v, dbt parse %v",
			models, pn.nodes, threads, d1.Round(time.Millisecond), d2.Round(time.Millisecond), d.Round(time.Millisecond),
			pn.wall.Round(time.Millisecond), pn.firstStart.Round(time.Millisecond), pn.overhead.Round(time.Millisecond/10),
			pw.wall.Round(time.Millisecond), pw.firstStart.Round(time.Millisecond), version.Round(time.Millisecond), parse.Round(time.Millisecond))
		b.ReportMetric(float64(pn.wall)/float64(d), "per-node/dbt-build")
		b.ReportMetric(float64(pw.wall)/float64(d), "per-wave/dbt-build")
		b.ReportMetric(float64(pn.firstStart)/float64(parse), "first-node/dbt-parse")
		b.ReportMetric(float64(pn.firstStart)/float64(version), "first-node/dbt-version")
		b.ReportMetric(float64(pn.overhead.Microseconds())/1000, "overhead-ms/node")
		b.ReportMetric(d.Seconds(), "dbt-build-s")
	}
}

// tail returns the last n bytes of out.
func tail(out []byte, n int) []byte {
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}
