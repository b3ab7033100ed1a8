package executor_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// parentEnv makes the test binary stand in for a dbtorch process
// (TestWarmWorkerDiesWithParent): it runs the probe project's sleepy model
// on a warm worker and waits to be killed.
const parentEnv = "DBTORCH_TEST_WARM_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(parentEnv) != "" {
		os.Exit(warmParent())
	}
	os.Exit(m.Run())
}

// warmParent starts a Warm executor on $DBTORCH_TEST_WARM_PARENT (a
// project directory) with its work directory in $DBTORCH_TEST_WORK, runs
// model.probe.sleepy, and blocks; it prints "ready" once the workers run.
func warmParent() int {
	workers, _ := strconv.Atoi(os.Getenv("DBTORCH_TEST_WORKERS"))
	w, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{
		Project: dbt.Project{Dir: os.Getenv(parentEnv)}, WorkDir: os.Getenv("DBTORCH_TEST_WORK")}, Workers: workers})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	ctx := context.Background()
	m, err := w.Manifest(ctx)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = w.Execute(ctx, executor.Request{Command: executor.Run, Nodes: []*manifest.Node{m.Lookup("model.probe.sleepy")}})
	select {}
}

// TestWarmWorkerDiesWithParent kills a process running a warm worker (in
// the middle of an invocation) with SIGKILL, so that nothing in it runs:
// the worker must be gone shortly after, and its DuckDB file free for the
// next dbt. With two workers, forked from a zygote (dbtorch's child; the
// workers are the zygote's), the zygote and both workers must be gone.
func TestWarmWorkerDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	for _, c := range []struct {
		name             string
		workers, running int
	}{{"one worker", 0, 1}, {"forked workers", 2, 3}} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyProbe(t)
			work := t.TempDir()
			started := filepath.Join(t.TempDir(), "started")
			env := probeEnv(t, dir, "DBTORCH_PROBE_SLEEP=120", "DBTORCH_PROBE_STARTED="+started)
			parent := exec.Command(os.Args[0], "-test.run=^$")
			parent.Env = append(env, parentEnv+"="+dir, "DBTORCH_TEST_WORK="+work, "DBTORCH_DBT="+dbttest.DBT(t),
				fmt.Sprintf("DBTORCH_TEST_WORKERS=%d", c.workers))
			stdout, err := parent.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, parent.Start())
			t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			require.NoError(t, err, line)
			require.Equal(t, "ready\n", line)
			require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 60*time.Second, 50*time.Millisecond,
				"the worker runs the sleepy model")
			require.Eventually(t, func() bool { return len(processesWith(t, work)) == c.running }, 60*time.Second, 50*time.Millisecond,
				"%d worker processes run", c.running)

			require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
			_ = parent.Wait()
			assert.Eventually(t, func() bool { return len(processesWith(t, work)) == 0 }, 10*time.Second, 50*time.Millisecond,
				"the workers died with their parent")
			for _, pid := range processesWith(t, work) {
				var n int
				if _, err := fmt.Sscan(pid, &n); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
			// The DuckDB file is free: dbt can write to it.
			out, err := dbttest.Run(t, dir, env, "run", "--select", "quick")
			assert.NoError(t, err, out)
		})
	}
}
