package cache

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
)

// BenchmarkKeys10k keys every node of a synthetic 10,000-model project
// with a fresh Keyer (nothing memoized between iterations).
func BenchmarkKeys10k(b *testing.B) {
	s := newSynth(42, 10000)
	m, g, fs := s.build(b)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		k, err := NewKeyer(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject, Vars: dbt.Vars{"v0": 1}}})
		require.NoError(b, err)
		for _, id := range g.IDs() {
			if _, err := k.Key(id); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/10k-nodes")
	}
}
