package proc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/proc"
)

// helperEnv makes the test binary act as a parent process that starts a
// child through proc and then waits to be killed (TestChildDiesWithParent).
const helperEnv = "DBTORCH_PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "parent" {
		p, err := proc.Start(proc.Spec{Path: "sleep", Args: []string{"300"}})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(p.Pid())
		select {}
	}
	os.Exit(m.Run())
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRunExitAndTail(t *testing.T) {
	res := proc.Run(t.Context(), proc.Spec{Path: "sh", Args: []string{"-c", "echo out; echo err >&2; printf '\\033[31mred\\033[0m\\n'; exit 3"}})
	assert.Equal(t, 3, res.ExitCode)
	assert.Error(t, res.Err)
	assert.Empty(t, res.Signal)
	assert.Equal(t, "sh exited with status 3", res.Describe("sh"))
	tail := res.Tail(10)
	assert.Contains(t, tail, "out")
	assert.Contains(t, tail, "err")
	assert.Contains(t, tail, "red")
	assert.NotContains(t, tail, "\x1b[")
	assert.Equal(t, "red", res.Tail(1))
	assert.False(t, res.Ended.Before(res.Started))

	res = proc.Run(t.Context(), proc.Spec{Path: filepath.Join(t.TempDir(), "missing")})
	assert.Equal(t, -1, res.ExitCode)
	require.Error(t, res.Err)
	assert.Contains(t, res.Tail(5), "missing")
}

func TestRunStdoutAndEnv(t *testing.T) {
	var out strings.Builder
	res := proc.Run(t.Context(), proc.Spec{Path: "sh", Args: []string{"-c", "echo $X; pwd"}, Env: []string{"X=42"}, Dir: "/", Stdout: &out})
	require.NoError(t, res.Err)
	assert.Equal(t, "42\n/\n", out.String())
}

// TestRunCancelKillsGroup cancels a process that ignores SIGINT and has
// a child of its own: after the grace period the whole group is gone.
func TestRunCancelKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		require.Eventually(t, func() bool { _, err := os.Stat(pidFile); return err == nil }, 10*time.Second, 10*time.Millisecond)
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	res := proc.Run(ctx, proc.Spec{Path: "sh", Args: []string{"-c", "trap '' INT; sleep 300 & echo $! > " + pidFile + "; wait; wait"}, Grace: 300 * time.Millisecond})
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Equal(t, "killed", res.Signal)
	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 20*time.Millisecond, "the group's other process is gone")
}

// TestRunCancelInterrupts: a process that exits on SIGINT ends by it,
// before the grace period.
func TestRunCancelInterrupts(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := proc.Run(ctx, proc.Spec{Path: "sleep", Args: []string{"300"}, Grace: time.Minute})
	assert.Less(t, time.Since(start), 30*time.Second)
	assert.Equal(t, "interrupt", res.Signal)
}

// TestChildDiesWithParent starts a parent (this test binary as a helper)
// that starts `sleep 300` through proc, kills the parent with SIGKILL, and
// checks that the sleep is gone shortly after: the kernel's parent-death
// signal, since nothing in the parent could run.
func TestChildDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parent-death signal is Linux only")
	}
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), helperEnv+"=parent")
	stdout, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, line)
	child, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err, line)
	require.True(t, alive(child))
	require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
	_ = parent.Wait()
	assert.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 20*time.Millisecond, "the child died with its parent")
	if alive(child) {
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
}

// TestChildOutlivesStartingGoroutine: a process started from a goroutine
// that then returns keeps running (the parent-death signal is tied to the
// starting OS thread, which outlives an unlocked goroutine), and Stop ends
// it.
func TestChildOutlivesStartingGoroutine(t *testing.T) {
	started := make(chan *proc.Process)
	go func() {
		p, err := proc.Start(proc.Spec{Path: "sleep", Args: []string{"300"}})
		assert.NoError(t, err)
		started <- p
	}()
	p := <-started
	require.NotNil(t, p)
	// Let the runtime move goroutines around for a while.
	for range 50 {
		done := make(chan struct{})
		go func() { runtime.Gosched(); close(done) }()
		<-done
	}
	time.Sleep(200 * time.Millisecond)
	assert.True(t, alive(p.Pid()), "the child is still running")
	res := p.Stop(0)
	assert.Equal(t, "killed", res.Signal)
	assert.False(t, alive(p.Pid()))
}

func TestStartStdin(t *testing.T) {
	p, err := proc.Start(proc.Spec{Path: "cat", Stdin: true})
	require.NoError(t, err)
	_, err = p.Stdin().Write([]byte("hello\n"))
	require.NoError(t, err)
	require.NoError(t, p.Stdin().Close())
	res := p.Wait()
	require.NoError(t, res.Err)
	assert.Equal(t, "hello", p.Tail(1))
	assert.Equal(t, 0, res.ExitCode)
}

// TestForkedExitError: a Forked process's end, as its parent reports it,
// is a Result whose Err ExitError reads as it reads a started process's:
// the exit status, or -1 and the signal's name.
func TestForkedExitError(t *testing.T) {
	for _, c := range []struct {
		reported, code int
		signal         string
	}{{3, 3, ""}, {-int(syscall.SIGKILL), -1, "killed"}} {
		// A real process in a group of its own stands for the forked one:
		// Exited kills what is left of its group.
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		inR, inW, err := os.Pipe()
		require.NoError(t, err)
		outR, outW, err := os.Pipe()
		require.NoError(t, err)
		f := proc.NewForked(cmd.Process.Pid, inW, outR)
		f.Exited(c.reported)
		require.NoError(t, inR.Close())
		require.NoError(t, outW.Close())
		res := f.Wait()
		_ = cmd.Wait() // killed with its group
		code, ok := proc.ExitError(res.Err)
		assert.True(t, ok, "%v", res.Err)
		assert.Equal(t, c.code, code)
		assert.Equal(t, c.code, res.ExitCode)
		assert.Equal(t, c.signal, res.Signal)
	}
	_, ok := proc.ExitError(errors.New("not an exit"))
	assert.False(t, ok)
}
