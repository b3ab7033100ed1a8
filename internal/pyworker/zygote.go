package pyworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/dbtorch/dbtorch/internal/proc"
)

// ErrNoFork is returned by LaunchZygote where workers cannot be forked
// (not Linux: a forked worker must die with its zygote, which needs
// PR_SET_PDEATHSIG).
var ErrNoFork = errors.New("pyworker: forking workers needs Linux")

// Zygote is a worker that parses the project once and then forks
// workers (Fork) that start with its parsed manifests instead of
// a parse each, and share its memory page by page
// until they write to it (worker.py, zygote_loop). It runs no invocation
// itself. A forked worker is a Worker like a launched one; it dies with
// the zygote. Methods are safe for concurrent use.
type Zygote struct {
	w   *Worker
	ctl *net.UnixConn
	log *slog.Logger

	forkMu sync.Mutex // pairs a fork's descriptors with its request
	mu     sync.Mutex
	nextID int
	kids   map[int]*proc.Forked // pid -> not known to have ended
	early  map[int]int          // pid -> code: ended before Fork took it
	// dropped holds the forks whose Fork returned before the zygote
	// answered (ctx ended): their ends are of no one's interest.
	dropped map[int]bool
	gone    bool // the zygote's reply pipe closed
}

// LaunchZygote starts a zygote and sends it start, returning once it has
// parsed the project, as Launch does.
func LaunchZygote(ctx context.Context, cfg Config, start Request) (*Zygote, error) {
	if runtime.GOOS != "linux" {
		return nil, ErrNoFork
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pyworker: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "zygote-ctl"), os.NewFile(uintptr(fds[1]), "zygote-ctl-child")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("pyworker: zygote socket: %w", err)
	}
	z := &Zygote{ctl: c.(*net.UnixConn), kids: map[int]*proc.Forked{}, early: map[int]int{}, dropped: map[int]bool{}, log: cfg.Logger}
	if z.log == nil {
		z.log = slog.New(slog.DiscardHandler)
	}
	z.w, err = launch(ctx, cfg, start, theirs, z.event)
	theirs.Close()
	if err != nil {
		z.ctl.Close()
		return nil, err
	}
	return z, nil
}

// event takes the zygote's "exited" messages and, with a zero Reply, the
// end of its reply pipe: every forked worker not known to have ended is
// then killed (it dies with the zygote anyway) and ends when its output
// closes.
func (z *Zygote) event(m Reply) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if m.Type == "" {
		z.gone = true
		for pid, k := range z.kids {
			k.Orphaned()
			delete(z.kids, pid)
		}
		return
	}
	if k := z.kids[m.PID]; k != nil {
		k.Exited(m.Code)
		delete(z.kids, m.PID)
		return
	}
	if z.dropped[m.PID] {
		delete(z.dropped, m.PID)
		return
	}
	z.early[m.PID] = m.Code
}

// drop forgets the worker pid that a cancelled Fork left: its end,
// reported already or to come.
func (z *Zygote) drop(pid int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.early[pid]; ok {
		delete(z.early, pid)
		return
	}
	if !z.gone {
		z.dropped[pid] = true
	}
}

// Ready returns the zygote's ready reply (its pid and parse time, the
// patches of its workers).
func (z *Zygote) Ready() Reply { return z.w.Ready() }

// Alive reports whether the zygote still runs.
func (z *Zygote) Alive() bool { return z.w.Alive() }

// Pid returns the zygote's process id.
func (z *Zygote) Pid() int { return z.w.Pid() }

// Fork starts a worker from the zygote. The worker is ready: it has the
// zygote's parsed manifests and answers requests at once; its Ready is
// the zygote's with the worker's pid. ctx bounds the wait for the
// zygote's answer; a zygote that has ended gives an error wrapping
// ErrExited.
func (z *Zygote) Fork(ctx context.Context) (*Worker, error) {
	z.mu.Lock()
	gone := z.gone
	z.mu.Unlock()
	if gone || !z.Alive() {
		return nil, fmt.Errorf("pyworker: fork: %w: the zygote ended", ErrExited)
	}
	var fds [6]*os.File // stdin r/w, reply r/w, output r/w
	closeAll := func() {
		for _, f := range fds {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := 0; i < 6; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("pyworker: fork: pipe: %w", err)
		}
		fds[i], fds[i+1] = r, w
	}
	inR, inW, repR, repW, outR, outW := fds[0], fds[1], fds[2], fds[3], fds[4], fds[5]

	z.forkMu.Lock()
	z.mu.Lock()
	z.nextID++
	id := z.nextID
	z.mu.Unlock()
	rights := syscall.UnixRights(int(inR.Fd()), int(repW.Fd()), int(outW.Fd()))
	_, _, err := z.ctl.WriteMsgUnix([]byte{'f'}, rights, nil)
	var ch chan Reply
	if err == nil {
		// The request goes before the next fork's descriptors: the zygote
		// pairs each request with the descriptors that came first.
		ch, err = z.w.post(Request{ID: id, Type: "fork"})
	}
	z.forkMu.Unlock()
	var m Reply
	if err == nil {
		// Not a Call with ctx: a cancelled Call would stop the zygote.
		// The zygote answers a fork without running dbt.
		select {
		case r, ok := <-ch:
			if m = r; !ok {
				err = fmt.Errorf("%w: the zygote ended", ErrExited)
			}
		case <-ctx.Done():
			// The fork may still happen: once the zygote answers, the
			// worker's pipes are closed, so it ends at once, and its end
			// is forgotten.
			go func() {
				r, ok := <-ch
				closeAll()
				if ok && r.Type == "forked" && r.PID > 0 {
					z.drop(r.PID)
				}
			}()
			return nil, ctx.Err()
		}
	}
	// The zygote holds its own copies now (or has no use for them).
	inR.Close()
	repW.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		repR.Close()
		outR.Close()
		return nil, fmt.Errorf("pyworker: fork: %w", err)
	}
	if m.Type != "forked" || m.PID <= 0 {
		inW.Close()
		repR.Close()
		outR.Close()
		msg := "no worker"
		if m.Error != nil {
			msg = *m.Error
		}
		return nil, fmt.Errorf("pyworker: fork: %s", msg)
	}
	k := proc.NewForked(m.PID, inW, outR)
	z.mu.Lock()
	switch code, ok := z.early[m.PID]; {
	case ok:
		delete(z.early, m.PID)
		k.Exited(code)
	case z.gone:
		k.Orphaned()
	default:
		z.kids[m.PID] = k
	}
	z.mu.Unlock()
	w := &Worker{p: k, pending: map[int]chan Reply{}}
	w.ready = z.w.Ready()
	w.ready.PID, w.ready.Elapsed = m.PID, 0
	go w.read(repR, z.log)
	return w, nil
}

// Close ends the zygote's input, waits up to wait for it and its forked
// workers to end (their inputs should be closed first: they die with the
// zygote) and then kills it.
func (z *Zygote) Close(wait time.Duration) proc.Result {
	res := z.w.Close(wait)
	z.ctl.Close()
	return res
}

// Kill stops the zygote at once (its forked workers die with it).
func (z *Zygote) Kill() {
	z.w.Kill()
	z.ctl.Close()
}
