package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// Transport delivers OpenLineage events. Emit must be safe for concurrent
// use. A transport that buffers (HTTPTransport) also implements Flush and
// io.Closer-like Close(ctx); call Close before the program exits.
type Transport interface {
	Emit(ctx context.Context, ev *RunEvent) error
}

// FileTransport appends each event as one line of JSON to a file (the
// format of OpenLineage's file transport and of `jq -c`). The file is
// opened (created when missing) on the first Emit and kept open; each
// Emit writes its whole line with one write call, so a reader never sees
// half an event. Close syncs and closes the file. The zero value with Path
// set is ready to use; it is safe for concurrent use.
type FileTransport struct {
	// Path is the file to append to.
	Path string
	// Fs is the file system; nil means the operating system's.
	Fs afero.Fs

	mu sync.Mutex
	f  afero.File
}

// Emit appends ev to the file.
func (t *FileTransport) Emit(ctx context.Context, ev *RunEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("artifacts: encode lineage event: %w", err)
	}
	line = append(line, '\n')
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		f, err := fsOrOS(t.Fs).OpenFile(t.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("artifacts: lineage file: %w", err)
		}
		t.f = f
	}
	if _, err := t.f.Write(line); err != nil {
		return fmt.Errorf("artifacts: lineage file %s: %w", t.Path, err)
	}
	return nil
}

// Close syncs and closes the file; a later Emit opens it again.
func (t *FileTransport) Close(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	f := t.f
	t.f = nil
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("artifacts: lineage file %s: %w", t.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("artifacts: lineage file %s: %w", t.Path, err)
	}
	return nil
}

// ErrQueueFull is returned by HTTPTransport.Emit when its queue is full;
// the event is dropped rather than making the build wait.
var ErrQueueFull = errors.New("artifacts: lineage queue full, event dropped")

// ErrTransportClosed is returned by HTTPTransport.Emit after Close.
var ErrTransportClosed = errors.New("artifacts: lineage transport closed")

// DeliveryError is an event that HTTPTransport could not deliver: the
// endpoint refused it, or it failed on every attempt.
type DeliveryError struct {
	// RunID and EventType identify the event.
	RunID     string
	EventType EventType
	// Attempts is how many times it was sent.
	Attempts int
	// StatusCode is the last HTTP status, 0 when no response came.
	StatusCode int
	// Err is the last error.
	Err error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("artifacts: lineage event %s %s not delivered after %d attempt(s): %v", e.EventType, e.RunID, e.Attempts, e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// DefaultQueueSize is HTTPTransport's default queue: room for the events of
// a 30,000-node build, at the cost of 8 bytes a slot.
const DefaultQueueSize = 1 << 16

// HTTPOptions configures an HTTPTransport. The zero value gives the
// defaults.
type HTTPOptions struct {
	// Client sends the requests; nil means a client with a 10s timeout.
	Client *http.Client
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// Header is added to every request.
	Header http.Header
	// QueueSize is how many events wait to be sent before Emit drops
	// events (ErrQueueFull); 0 means DefaultQueueSize. Lineage.Report
	// queues a whole build's events at once (two per model, seed and
	// snapshot, and two for the build).
	QueueSize int
	// MaxRetries is how many times a failed event is sent again; 0 means
	// 3, a negative value none.
	MaxRetries int
	// CheckRetry decides whether a failed attempt is retried; nil means
	// DefaultCheckRetry.
	CheckRetry func(resp *http.Response, err error) bool
	// Backoff returns the wait before retry number attempt (1, 2, ...);
	// nil means DefaultBackoff.
	Backoff func(attempt int, resp *http.Response) time.Duration
	// Logger receives a warning for each event given up; nil discards
	// them.
	Logger *slog.Logger
}

// DefaultCheckRetry retries network errors, 408, 429 and 5xx responses
// other than 501, and nothing else.
func DefaultCheckRetry(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled)
	}
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return true
	case c >= 500 && c != http.StatusNotImplemented:
		return true
	}
	return false
}

// DefaultBackoff waits 250ms, 500ms, 1s, ... up to 10s, or what a
// Retry-After header (seconds or an HTTP date) asks for, at most 30s. Its
// timing is internal/backoff's, as the dbt Cloud client's and the
// orchestrator's retries are.
func DefaultBackoff(attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		// Whatever the status: the endpoint asked for this wait.
		if d, ok := backoff.RetryAfter(resp, time.Now(), resp.StatusCode); ok {
			return min(d, 30*time.Second)
		}
	}
	return backoff.Exponential(250*time.Millisecond, 10*time.Second, 2, attempt-1)
}

// HTTPTransport POSTs each event as JSON to an OpenLineage endpoint
// (Marquez's /api/v1/lineage, or any other) from a background goroutine,
// so that emitting never waits for the network: Emit queues the event and
// returns. Failed attempts are retried with backoff up to MaxRetries;
// events still undelivered are logged and reported by Close. Events are
// sent one at a time, in the order they were emitted.
//
// Create one with NewHTTPTransport and Close it when done.
type HTTPTransport struct {
	url  string
	opts HTTPOptions

	queue   chan *RunEvent
	pending sync.WaitGroup // events queued and not yet handled
	done    chan struct{}  // closed when the sender exits
	ctx     context.Context
	cancel  context.CancelFunc

	mu     sync.Mutex
	closed bool
	errs   []error

	sent, failed, dropped atomic.Int64
}

// NewHTTPTransport starts a transport that posts events to url.
func NewHTTPTransport(url string, opts HTTPOptions) *HTTPTransport {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = 3
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.CheckRetry == nil {
		opts.CheckRetry = DefaultCheckRetry
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &HTTPTransport{url: url, opts: opts, queue: make(chan *RunEvent, opts.QueueSize), done: make(chan struct{}), ctx: ctx, cancel: cancel}
	go t.loop()
	return t
}

// Emit queues ev for sending and returns at once: ErrQueueFull when the
// queue is full (the event is dropped), ErrTransportClosed after Close.
func (t *HTTPTransport) Emit(ctx context.Context, ev *RunEvent) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrTransportClosed
	}
	t.pending.Add(1)
	select {
	case t.queue <- ev:
		return nil
	default:
		t.pending.Done()
		t.dropped.Add(1)
		return ErrQueueFull
	}
}

// Flush waits until every event emitted so far has been delivered or given
// up, or until ctx is done.
func (t *HTTPTransport) Flush(ctx context.Context) error {
	idle := make(chan struct{})
	go func() { t.pending.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, waits until the queued ones are delivered
// or given up (or ctx is done, which abandons the rest), stops the sender,
// and returns the delivery errors (each a *DeliveryError) joined, with
// ctx's error if it expired. Close is idempotent.
func (t *HTTPTransport) Close(ctx context.Context) error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.queue)
	}
	t.mu.Unlock()
	var ctxErr error
	select {
	case <-t.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		t.cancel()
		<-t.done
	}
	t.cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(append(t.errs[:len(t.errs):len(t.errs)], ctxErr)...)
}

// Stats reports how many events were delivered, given up after retries or
// refused, and dropped because the queue was full.
func (t *HTTPTransport) Stats() (sent, failed, dropped int64) {
	return t.sent.Load(), t.failed.Load(), t.dropped.Load()
}

func (t *HTTPTransport) loop() {
	defer close(t.done)
	for ev := range t.queue {
		if t.ctx.Err() != nil {
			t.giveUp(&DeliveryError{RunID: ev.Run.RunID, EventType: ev.EventType, Err: t.ctx.Err()})
		} else if err := t.deliver(ev); err != nil {
			t.giveUp(err)
		} else {
			t.sent.Add(1)
		}
		t.pending.Done()
	}
}

func (t *HTTPTransport) giveUp(err *DeliveryError) {
	t.failed.Add(1)
	t.opts.Logger.Warn("artifacts: lineage event not delivered", "url", t.url, "run_id", err.RunID,
		"event_type", err.EventType, "attempts", err.Attempts, "status", err.StatusCode, "err", err.Err)
	t.mu.Lock()
	t.errs = append(t.errs, err)
	t.mu.Unlock()
}

func (t *HTTPTransport) deliver(ev *RunEvent) *DeliveryError {
	body, err := json.Marshal(ev)
	if err != nil {
		return &DeliveryError{RunID: ev.Run.RunID, EventType: ev.EventType, Err: err}
	}
	de := &DeliveryError{RunID: ev.Run.RunID, EventType: ev.EventType}
	for attempt := 0; ; attempt++ {
		de.Attempts = attempt + 1
		resp, err := t.post(body)
		de.StatusCode = 0
		if resp != nil {
			de.StatusCode = resp.StatusCode
		}
		if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return nil
		}
		de.Err = err
		if err == nil {
			de.Err = fmt.Errorf("HTTP %s", resp.Status)
		}
		if attempt >= t.opts.MaxRetries || !t.opts.CheckRetry(resp, err) {
			return de
		}
		if !backoff.Sleep(t.ctx, t.opts.Backoff(attempt+1, resp)) {
			de.Err = errors.Join(de.Err, t.ctx.Err())
			return de
		}
	}
}

// post sends one attempt; the response body is drained and closed.
func (t *HTTPTransport) post(body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(t.ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range t.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if t.opts.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.opts.APIKey)
	}
	resp, err := t.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp, nil
}

// ClosingTransport is a Transport that must be closed after the last
// event: FileTransport and HTTPTransport.
type ClosingTransport interface {
	Transport
	Close(ctx context.Context) error
}

// OpenTransport returns the transport for target, as a command-line flag
// gives it: an HTTPTransport posting to target when it is an http:// or
// https:// URL (opts apply), else a FileTransport appending JSON lines to
// the file target. Close it when the build is done; for HTTP, give Close a
// deadline so that an unreachable endpoint cannot hold the program.
func OpenTransport(target string, opts HTTPOptions) (ClosingTransport, error) {
	switch {
	case target == "":
		return nil, errors.New("artifacts: empty lineage target")
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"):
		if _, err := url.ParseRequestURI(target); err != nil {
			return nil, fmt.Errorf("artifacts: lineage URL: %w", err)
		}
		return NewHTTPTransport(target, opts), nil
	}
	return &FileTransport{Path: target}, nil
}
