package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/syncbuf"
)

// TestMain runs the CLI itself when DBTORCH_CLI_MAIN is set, so that
// tests can start it as a process (with its arguments) and signal it.
func TestMain(m *testing.M) {
	if os.Getenv("DBTORCH_CLI_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// startCLI starts the CLI as a process with args.
func startCLI(t *testing.T, args ...string) (*exec.Cmd, *syncbuf.Buffer, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DBTORCH_CLI_MAIN=1")
	var out, errb syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &out, &errb
}

func waitFor(t *testing.T, buf *syncbuf.Buffer, what string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(buf.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; output:\n%s", what, timeout, buf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exitWithin waits for cmd and returns its exit code, failing the test
// when it takes longer than timeout.
func exitWithin(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), time.Since(start)
		}
		require.NoError(t, err)
		return 0, time.Since(start)
	case <-time.After(timeout):
		t.Fatalf("still running after %s", timeout)
		return -1, 0
	}
}

// running reports whether a process whose command line mentions s is
// running (dbt and warm workers are started with the project's path).
func running(s string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(data, []byte(s)) {
			return true
		}
	}
	return false
}

// TestCLIInterrupt: an interrupted build exits 130 and says so; a second
// interrupt stops at once, whatever --kill-grace is, and leaves no dbt
// running.
func TestCLIInterrupt(t *testing.T) {
	dir := shopEnv(t)
	// A model that takes two minutes, and says (a file) when it runs: a
	// node the warm worker's build session has not started yet is
	// cancelled at once, with nothing for dbt's grace to wait for.
	runs := filepath.Join(t.TempDir(), "runs")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "models", "slow.py"),
		fmt.Appendf(nil, "import time\n\ndef model(dbt, session):\n    dbt.config(materialized='table')\n    open(%q, 'w').close()\n    time.sleep(120)\n    return session.sql('select 1 as x')\n", runs), 0o644))
	results := filepath.Join(t.TempDir(), "results.json")

	t.Run("once", func(t *testing.T) {
		cmd, out, errb := startCLI(t, "build", "--project-dir", dir, "-s", "slow", "--kill-grace", "1s", "--results", results)
		waitFor(t, out, "START  model.shop.slow", 90*time.Second)
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		code, took := exitWithin(t, cmd, 30*time.Second)
		assert.Equal(t, exitInterrupted, code, "stdout:\n%s\nstderr:\n%s", out, errb)
		assert.Contains(t, errb.String(), "dbtorch build: interrupted (interrupt)")
		assert.Contains(t, out.String(), "ERROR  model.shop.slow", "the running node ends in error (cancelled)")
		t.Logf("one SIGINT, --kill-grace 1s: exited %s after the signal", took)
		assert.FileExists(t, results, "results are written for an interrupted build")
	})
	t.Run("twice", func(t *testing.T) {
		require.NoError(t, os.RemoveAll(runs))
		cmd, out, errb := startCLI(t, "build", "--project-dir", dir, "-s", "slow", "--kill-grace", "10m")
		waitFor(t, out, "START  model.shop.slow", 90*time.Second)
		require.Eventually(t, func() bool { _, err := os.Stat(runs); return err == nil }, 90*time.Second, 20*time.Millisecond, "the model runs")
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		waitFor(t, errb, "interrupt again to stop at once", 10*time.Second)
		time.Sleep(3 * time.Second)
		assert.NotContains(t, errb.String(), "dbtorch build: interrupted", "dbt still has its grace: the build has not ended")
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		code, took := exitWithin(t, cmd, 5*time.Second)
		assert.Equal(t, exitInterrupted, code, "stdout:\n%s\nstderr:\n%s", out, errb)
		assert.Contains(t, errb.String(), "again: stopping at once")
		t.Logf("second SIGINT, --kill-grace 10m: exited %s after it", took)
		deadline := time.Now().Add(5 * time.Second)
		for running(dir) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		assert.False(t, running(dir), "no dbt left running")
	})
}
