package artifacts_test

import (
	"context"
	"io"
	"testing"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// discard is a Transport that drops events.
type discard struct{}

func (discard) Emit(context.Context, *artifacts.RunEvent) error { return nil }

// BenchmarkReporters measures each reporter on a 5,000-node run (a chain
// with the middle node failed), reported as microseconds per node, so that
// the cost of artifacts stays negligible next to running dbt (≈1 s per
// node).
func BenchmarkReporters(b *testing.B) {
	const n = 5000
	run := bigRun(b, n)
	fs := afero.NewMemMapFs()
	for _, bc := range []struct {
		name string
		r    orchestrator.Reporter
	}{
		{"run_results", &artifacts.RunResults{Path: "/o/run_results.json", Fs: fs}},
		{"summary", &artifacts.Summary{Path: "/o/summary.md", Fs: fs}},
		{"junit", &artifacts.JUnit{Path: "/o/junit.xml", Fs: fs, AllNodes: true, Hostname: "h"}},
		{"lineage", &artifacts.Lineage{Transport: discard{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := bc.r.Report(b.Context(), run); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/node")
		})
	}
	b.Run("mermaid", func(b *testing.B) {
		for b.Loop() {
			_, _ = io.WriteString(io.Discard, artifacts.Mermaid(run))
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/node")
	})
}
