// Package proc is dbtorch's one way to start a process: dbt itself, or a
// Python worker that imports dbt. Every process it starts
//
//   - runs without a shell, in a process group of its own (so that a
//     signal reaches dbt's own children too);
//   - is stopped by one rule: SIGINT to the group (dbt cancels its
//     running queries), then SIGKILL of the group after a grace period;
//   - keeps a bounded tail of its standard output and error, for error
//     reports;
//   - on Linux, is killed (SIGKILL) when dbtorch itself dies, however it
//     dies (Pdeathsig): a dbtorch killed with SIGKILL leaves no dbt or
//     warm worker running and holding a DuckDB lock.
//
// Pdeathsig fires when the OS thread that started the child exits, not
// when the process does. The Go runtime ends an OS thread only when a
// goroutine locked to it (runtime.LockOSThread) returns without
// unlocking; every other thread lives as long as the process. So a
// process started here dies with dbtorch, and not before, as long as the
// goroutine calling Start or Run is not one that locked its thread and is
// about to exit. TestChildOutlivesStartingGoroutine and
// TestChildDiesWithParent check both halves.
//
// Only the direct child gets the parent-death signal; its own children
// (rare for dbt) are in its process group, which Stop and Run kill.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// DefaultGrace is the time between SIGINT and SIGKILL when a Spec gives
// none.
const DefaultGrace = 5 * time.Second

// tailBytes is how much of a process's output is kept by default.
const tailBytes = 64 << 10

// Spec describes a process to start.
type Spec struct {
	// Path is the executable; Args its arguments (without Path).
	Path string
	Args []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Env is the environment; nil means os.Environ().
	Env []string
	// Grace is the time between SIGINT and SIGKILL when Run's context
	// ends; zero means DefaultGrace.
	Grace time.Duration
	// Stdin gives the process a pipe as standard input (Process.Stdin);
	// otherwise it reads from the null device.
	Stdin bool
	// ExtraFiles become the child's file descriptors 3, 4, ... The
	// caller keeps ownership (and should close its copies after Start).
	ExtraFiles []*os.File
	// TailBytes is how much of the combined standard output and error is
	// kept; zero means 64 KiB.
	TailBytes int
	// Stdout, when set, also receives everything the process writes to
	// its standard output (the tail keeps its end as well).
	Stdout io.Writer
}

// Result is how a process ended.
type Result struct {
	Started, Ended time.Time
	// ExitCode is the exit status, -1 when the process was killed by a
	// signal or did not start.
	ExitCode int
	// Signal names the signal that killed the process, if one did.
	Signal string
	// Err is nil when the process exited with status 0; otherwise the
	// *exec.ExitError or the start error.
	Err error

	out *Tail
}

// Tail returns the last n lines of the process's combined standard
// output and error, without ANSI colour codes; a process that did not
// start gives the start error.
func (r Result) Tail(n int) string {
	if r.out == nil {
		if r.Err != nil {
			return r.Err.Error()
		}
		return ""
	}
	return r.out.Lines(n)
}

// Describe says how the process ended, naming it as name: "dbt exited
// with status 2", "dbt was killed by signal killed".
func (r Result) Describe(name string) string {
	switch {
	case r.Signal != "":
		return name + " was killed by signal " + r.Signal
	case r.ExitCode >= 0:
		return fmt.Sprintf("%s exited with status %d", name, r.ExitCode)
	case r.Err != nil:
		return r.Err.Error()
	}
	return name + " ended"
}

// Process is a started process. Its methods are safe for concurrent use.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *Tail
	exited chan struct{} // closed once the process has been waited for
	res    Result        // set before exited is closed
}

// Start starts the process s describes. It lives until it exits or Stop
// is called; use Run for a process bound to a context.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	n := s.TailBytes
	if n <= 0 {
		n = tailBytes
	}
	p := &Process{cmd: cmd, out: NewTail(n), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if s.Stdout != nil {
		cmd.Stdout = io.MultiWriter(s.Stdout, p.out)
	}
	cmd.ExtraFiles = s.ExtraFiles
	cmd.SysProcAttr = sysProcAttr()
	// Output copying stops this long after the process exited, even if
	// something it started still holds the pipes.
	cmd.WaitDelay = time.Second
	if s.Stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("proc: %s: stdin: %w", s.Path, err)
		}
		p.stdin = w
	}
	p.res = Result{Started: time.Now(), ExitCode: -1, out: p.out}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", s.Path, err)
	}
	go p.wait()
	return p, nil
}

// wait waits for the process, records how it ended and kills what is
// left of its group.
func (p *Process) wait() {
	err := p.cmd.Wait()
	// Leave nothing of the group behind (threads' children, adapters'
	// helper processes).
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.res.Ended, p.res.Err = time.Now(), err
	if ps := p.cmd.ProcessState; ps != nil {
		p.res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.res.Signal = ws.Signal().String()
		}
	}
	close(p.exited)
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stdin returns the write end of the process's standard input, nil unless
// Spec.Stdin was set.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Done is closed when the process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.exited }

// Wait waits for the process to exit and returns how it ended.
func (p *Process) Wait() Result {
	<-p.exited
	return p.res
}

// Tail returns the last n lines the process wrote to its standard output
// and error, without ANSI colour codes.
func (p *Process) Tail(n int) string { return p.out.Lines(n) }

// Stop ends the process's group: SIGINT, then SIGKILL once grace has
// passed without the process exiting (at once when grace is zero), and
// waits for it.
func (p *Process) Stop(grace time.Duration) Result {
	pgid := p.cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return p.Wait()
}

// Run runs the process s describes to its end. When ctx ends first, the
// process is stopped (SIGINT, then SIGKILL after s.Grace). A process that
// cannot start gives a Result whose Err says why.
func Run(ctx context.Context, s Spec) Result {
	p, err := Start(s)
	if err != nil {
		now := time.Now()
		return Result{Started: now, Ended: now, ExitCode: -1, Err: err}
	}
	grace := s.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.Stop(grace)
	}
	return p.Wait()
}

// ExitError reports whether err is a process's non-zero exit (as opposed
// to a failure to start it), a Start'd process's or a Forked one's, and
// its exit code: -1 when a signal ended it, as exec.ExitError.ExitCode.
func ExitError(err error) (code int, ok bool) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), true
	}
	var fe *exitError
	if errors.As(err, &fe) {
		return max(fe.code, -1), true
	}
	return -1, false
}
