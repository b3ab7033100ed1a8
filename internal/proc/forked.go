package proc

import (
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Forked is a process that another process dbtorch started forked for it
// (a warm worker forked by its zygote, internal/pyworker): not dbtorch's
// child, so its end is learnt from its parent (Exited) or, when the
// parent is gone, by killing it (Orphaned). It keeps the rules of Start's
// processes: its own process group (the forking parent puts it there),
// stopped by SIGINT to the group, then SIGKILL; a bounded tail of its
// output; and it dies with dbtorch, through its parent (which dies with
// dbtorch) and its own parent-death signal. Its methods are safe for
// concurrent use.
type Forked struct {
	pid    int
	stdin  *os.File
	out    *Tail
	copied chan struct{} // closed when its output pipe reached EOF

	once   sync.Once
	ended  chan struct{} // closed once its end is known
	exited chan struct{} // closed once its end is known and its output read
	res    Result
}

// NewForked returns the handle of process pid, which reads stdin's
// other end and writes its standard output and error to output's other
// end; it takes ownership of both files and starts reading output.
func NewForked(pid int, stdin, output *os.File) *Forked {
	f := &Forked{pid: pid, stdin: stdin, out: NewTail(tailBytes), copied: make(chan struct{}),
		ended: make(chan struct{}), exited: make(chan struct{})}
	f.res = Result{Started: time.Now(), ExitCode: -1, out: f.out}
	go func() {
		defer close(f.copied)
		defer output.Close()
		_, _ = io.Copy(f.out, output)
	}()
	return f
}

// Exited records the process's end as its parent reported it: code is
// its exit status, or minus the signal that killed it. What is left of
// its group is killed; Done is closed once its output is read (at most a
// second later, as Start's WaitDelay).
func (f *Forked) Exited(code int) {
	f.once.Do(func() {
		_ = syscall.Kill(-f.pid, syscall.SIGKILL)
		f.res.ExitCode = code
		if code < 0 {
			f.res.ExitCode = -1
			f.res.Signal = syscall.Signal(-code).String()
		}
		if code != 0 {
			f.res.Err = &exitError{code: code}
		}
		close(f.ended)
		go f.finish(time.Second)
	})
}

// Orphaned records that the process's parent ended without reporting its
// end: the group is killed (the parent-death signal does so as well) and
// Done is closed when its output pipe closes, which it does when the
// process is gone.
func (f *Forked) Orphaned() {
	f.once.Do(func() {
		_ = syscall.Kill(-f.pid, syscall.SIGKILL)
		f.res.Signal = syscall.SIGKILL.String()
		f.res.Err = &exitError{code: -int(syscall.SIGKILL)}
		close(f.ended)
		go f.finish(5 * time.Second)
	})
}

func (f *Forked) finish(wait time.Duration) {
	t := time.NewTimer(wait)
	select {
	case <-f.copied:
	case <-t.C:
	}
	t.Stop()
	f.res.Ended = time.Now()
	close(f.exited)
}

// Pid returns the process id (also its process group id).
func (f *Forked) Pid() int { return f.pid }

// Stdin returns the write end of the process's standard input.
func (f *Forked) Stdin() io.WriteCloser { return f.stdin }

// Done is closed when the process has ended.
func (f *Forked) Done() <-chan struct{} { return f.exited }

// Wait waits for the process to end and returns how it ended.
func (f *Forked) Wait() Result {
	<-f.exited
	return f.res
}

// Tail returns the last n lines the process wrote to its standard output
// and error, without ANSI colour codes.
func (f *Forked) Tail(n int) string { return f.out.Lines(n) }

// Stop ends the process's group as Process.Stop does (SIGINT, then
// SIGKILL once grace has passed) and waits for its end. The end is
// reported by its parent (Exited) or its parent's end (Orphaned).
func (f *Forked) Stop(grace time.Duration) Result {
	if grace > 0 && f.signal(syscall.SIGINT) {
		t := time.NewTimer(grace)
		select {
		case <-f.exited:
		case <-t.C:
		}
		t.Stop()
	}
	f.signal(syscall.SIGKILL)
	return f.Wait()
}

// signal sends sig to the group unless the process is known to have
// ended (its pid may be reused once its parent reaped it); it reports
// whether it sent.
func (f *Forked) signal(sig syscall.Signal) bool {
	select {
	case <-f.ended:
		return false
	default:
	}
	_ = syscall.Kill(-f.pid, sig)
	return true
}

// exitError is a Forked process's non-zero end.
type exitError struct{ code int }

func (e *exitError) Error() string {
	if e.code < 0 {
		return "signal: " + syscall.Signal(-e.code).String()
	}
	return "exit status " + strconv.Itoa(e.code)
}
