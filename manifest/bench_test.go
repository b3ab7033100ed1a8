package manifest_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/projgen"
	"github.com/dbtorch/dbtorch/manifest"
)

// loadAndPlan is what the benchmark measures: read the file, parse it,
// build the graph, plan every node with immediate tests.
func loadAndPlan(tb testing.TB, path string) *manifest.Plan {
	m, err := manifest.Load(afero.NewOsFs(), path)
	require.NoError(tb, err)
	g, err := manifest.NewGraph(m)
	require.NoError(tb, err)
	return g.Plan(nil, manifest.Immediate)
}

// TestPeakMemoryHelper is not a test: BenchmarkLoadPlan10k runs the test
// binary with DBTORCH_PEAK_MANIFEST set to measure the peak memory of a
// process that only loads and plans that manifest.
func TestPeakMemoryHelper(t *testing.T) {
	path := os.Getenv("DBTORCH_PEAK_MANIFEST")
	if path == "" {
		t.Skip("helper process for BenchmarkLoadPlan10k")
	}
	p := loadAndPlan(t, path)
	require.NotEmpty(t, p.Nodes())
	// VmHWM is this process's peak RSS since exec (getrusage's maxrss
	// would include the parent's, which Linux carries across exec).
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Printf("PEAK_KB=%s\n", strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), " kB"))
		}
	}
}

// BenchmarkLoadPlan10k measures load + plan of a generated 10,000-model
// manifest (about 100 MB) against Python's json.load of the same file in
// the same run, and the peak memory of a process that loads and plans it.
// Goals: at least 5x faster than json.load alone; peak memory under 3x the
// file size.
func BenchmarkLoadPlan10k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "manifest.json")
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, projgen.WriteManifest(f, projgen.ManifestOptions{Models: 10000, Seed: 1}))
	require.NoError(b, f.Close())
	st, err := os.Stat(path)
	require.NoError(b, err)
	size := st.Size()

	// Python's json.load alone, timed inside Python (interpreter start-up
	// excluded), best of five.
	python := "python3"
	if root, err := filepath.Abs(filepath.Join("..", ".venv", "bin", "python")); err == nil {
		if _, err := os.Stat(root); err == nil {
			python = root
		}
	}
	py := `import json, sys, time
best = 1e9
for _ in range(5):
    t = time.perf_counter(); json.load(open(sys.argv[1])); best = min(best, time.perf_counter() - t)
print(best)`
	out, err := exec.Command(python, "-c", py, path).Output()
	require.NoError(b, err)
	pySec, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	require.NoError(b, err)

	var p *manifest.Plan
	best := time.Duration(1<<63 - 1)
	b.ResetTimer()
	for range max(b.N, 5) {
		start := time.Now()
		p = loadAndPlan(b, path)
		best = min(best, time.Since(start))
	}
	b.StopTimer()

	// Peak memory (max RSS) of a fresh process doing only load + plan.
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPeakMemoryHelper$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "DBTORCH_PEAK_MANIFEST="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	helperOut, err := cmd.Output()
	require.NoError(b, err, stderr.String())
	var peak int64
	for _, line := range strings.Split(string(helperOut), "\n") {
		if v, ok := strings.CutPrefix(line, "PEAK_KB="); ok {
			kb, err := strconv.ParseInt(v, 10, 64)
			require.NoError(b, err)
			peak = kb * 1024
		}
	}
	require.NotZero(b, peak, "helper printed no peak: %s", helperOut)

	ratio := pySec / best.Seconds()
	b.ReportMetric(float64(size)/1e6, "MB")
	b.ReportMetric(best.Seconds()*1000, "ms/load+plan")
	b.ReportMetric(pySec*1000, "ms/json.load")
	b.ReportMetric(ratio, "x-faster")
	b.ReportMetric(float64(peak)/float64(size), "peak/size")
	b.Logf("10,000 models, %d nodes planned in %d waves; file %.1f MB; load+plan %v (best of %d); Python json.load %.0f ms (best of 5): %.1fx faster (goal >= 5x); peak RSS %.0f MB = %.2fx the file (goal < 3x)",
		p.Len(), len(p.Waves()), float64(size)/1e6, best.Round(time.Millisecond), max(b.N, 5), pySec*1000, ratio, float64(peak)/1e6, float64(peak)/float64(size))
}
