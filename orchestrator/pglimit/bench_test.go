package pglimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// benchRounds is how many acquire/release pairs (or nodes) one iteration
// times, so that `make bench`'s -benchtime 1x gives stable figures.
const benchRounds = 400

// BenchmarkPGLimiter is the cost a limit adds to each node, PostgreSQL's
// (on the test harness's server, over loopback) against the in-process
// NewLimiter, measured in the same run and reported as ratios:
//
//   - serial: one Acquire and one Release of a free slot (µs per node);
//   - parallel: 8 goroutines on a four-slot limit, so that waiters queue
//     and are woken (µs per node of wall time);
//   - build: a build of benchRounds independent nodes with an executor
//     that does nothing, four workers, every node under a four-slot limit
//     (µs per node of wall time, the limit's share included);
//   - select-1: one round trip of a trivial query on the store's pool,
//     for scale.
func BenchmarkPGLimiter(b *testing.B) {
	pg := dbttest.StartPostgres(b)
	// The package's defaults, as a build gets them (openStore shortens them
	// for the tests).
	store := openStore(b, pgURL(pg), pglimit.Options{Lease: pglimit.DefaultLease, Poll: pglimit.DefaultPoll})
	ctx := context.Background()
	pgSerial, err := store.Limit("bench-serial", 4)
	if err != nil {
		b.Fatal(err)
	}
	pgParallel, err := store.Limit("bench-parallel", 4)
	if err != nil {
		b.Fatal(err)
	}
	pgBuild, err := store.Limit("bench-build", 4)
	if err != nil {
		b.Fatal(err)
	}
	var sel, inSerial, pSerial, inPar, pPar, inBuild, pBuild time.Duration
	for b.Loop() {
		sel += perRound(func() {
			if _, err := store.Pool().Exec(ctx, "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		})
		inSerial += serialCost(b, orchestrator.NewLimiter(4))
		pSerial += serialCost(b, pgSerial)
		inPar += parallelCost(b, orchestrator.NewLimiter(4))
		pPar += parallelCost(b, pgParallel)
		inBuild += buildCost(b, orchestrator.NewLimiter(4))
		pBuild += buildCost(b, pgBuild)
	}
	n := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / n }
	b.ReportMetric(us(sel), "select1-µs")
	b.ReportMetric(us(inSerial), "inproc-serial-µs/node")
	b.ReportMetric(us(pSerial), "pg-serial-µs/node")
	b.ReportMetric(float64(pSerial)/float64(inSerial), "serial-pg/inproc")
	b.ReportMetric(us(inPar), "inproc-parallel-µs/node")
	b.ReportMetric(us(pPar), "pg-parallel-µs/node")
	b.ReportMetric(float64(pPar)/float64(inPar), "parallel-pg/inproc")
	b.ReportMetric(us(inBuild), "inproc-build-µs/node")
	b.ReportMetric(us(pBuild), "pg-build-µs/node")
	b.ReportMetric(float64(pBuild)/float64(inBuild), "build-pg/inproc")
}

// perRound returns f's mean time over benchRounds calls.
func perRound(f func()) time.Duration {
	start := time.Now()
	for range benchRounds {
		f()
	}
	return time.Since(start) / benchRounds
}

func serialCost(b *testing.B, l orchestrator.Limiter) time.Duration {
	return perRound(func() {
		if err := l.Acquire(context.Background()); err != nil {
			b.Fatal(err)
		}
		l.Release()
	})
}

func parallelCost(b *testing.B, l orchestrator.Limiter) time.Duration {
	const goroutines = 8
	start := time.Now()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range benchRounds / goroutines {
				if err := l.Acquire(context.Background()); err != nil {
					b.Error(err)
					return
				}
				l.Release()
			}
		})
	}
	wg.Wait()
	return time.Since(start) / benchRounds
}

// noopExec succeeds every node at once.
type noopExec struct{}

func (noopExec) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	return succeeded(req, time.Now()), nil
}

func buildCost(b *testing.B, l orchestrator.Limiter) time.Duration {
	start := time.Now()
	run, err := buildWide(context.Background(), noopExec{}, benchRounds, nil, orchestrator.NodeLimit{Name: "wh", Limiter: l})
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if len(run.Results) != benchRounds {
		b.Fatalf("%d results, want %d", len(run.Results), benchRounds)
	}
	return took / benchRounds
}
