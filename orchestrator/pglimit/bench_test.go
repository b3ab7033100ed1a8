package pglimit_test

import (
	"context"
	"testing"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// BenchmarkAcquireRelease is the cost a limit adds to each node: one
// Acquire and one Release, for the in-process limiter and for the
// PostgreSQL one on the test harness's server (loopback). "serial" takes
// a free slot every time; "parallel" runs 2×GOMAXPROCS goroutines on a
// four-slot limit, so that waiters queue. "postgres/select-1" is one
// round trip of a trivial query on the same pool, for scale.
func BenchmarkAcquireRelease(b *testing.B) {
	pg := dbttest.StartPostgres(b)
	store := openStore(b, pgURL(pg), pglimit.Options{})
	serial, err := store.Limit("bench-serial", 4)
	if err != nil {
		b.Fatal(err)
	}
	parallel, err := store.Limit("bench-parallel", 4)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("postgres/select-1", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.Pool().Exec(context.Background(), "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name     string
		l        orchestrator.Limiter
		parallel bool
	}{
		{"in-process/serial", orchestrator.NewLimiter(4), false},
		{"postgres/serial", serial, false},
		{"in-process/parallel", orchestrator.NewLimiter(4), true},
		{"postgres/parallel", parallel, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			if !c.parallel {
				for b.Loop() {
					if err := c.l.Acquire(ctx); err != nil {
						b.Fatal(err)
					}
					c.l.Release()
				}
				return
			}
			b.SetParallelism(2)
			b.RunParallel(func(p *testing.PB) {
				for p.Next() {
					if err := c.l.Acquire(ctx); err != nil {
						b.Error(err)
						return
					}
					c.l.Release()
				}
			})
		})
	}
}
