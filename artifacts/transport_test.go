package artifacts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
)

// lineageServer records the events posted to it; fail decides, per request
// number (from 1), which status to answer.
type lineageServer struct {
	*httptest.Server
	mu       sync.Mutex
	events   []artifacts.RunEvent
	requests atomic.Int64
	auth     string
}

func newLineageServer(t *testing.T, status func(n int64) int) *lineageServer {
	t.Helper()
	s := &lineageServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/lineage" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request shape", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if code := status(n); code != http.StatusCreated && code != http.StatusOK {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			http.Error(w, "nope", code)
			return
		}
		var ev artifacts.RunEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.auth = r.Header.Get("Authorization")
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(s.Close)
	return s
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func fastBackoff(int, *http.Response) time.Duration { return time.Millisecond }

func TestHTTPTransportDeliversInOrder(t *testing.T) {
	srv := newLineageServer(t, func(int64) int { return http.StatusCreated })
	tr := artifacts.NewHTTPTransport(srv.URL+"/api/v1/lineage", artifacts.HTTPOptions{APIKey: "k3y", Logger: quiet()})
	l := &artifacts.Lineage{Transport: tr}
	run := fixtureRun(t)
	require.NoError(t, l.Report(t.Context(), run))
	require.NoError(t, tr.Close(t.Context()))

	want, err := l.Events(run)
	require.NoError(t, err)
	require.Len(t, srv.events, len(want))
	for i := range want {
		assert.Equal(t, want[i].EventType, srv.events[i].EventType, "event %d", i)
		assert.Equal(t, want[i].Run.RunID, srv.events[i].Run.RunID, "event %d", i)
	}
	assert.Equal(t, "Bearer k3y", srv.auth)
	sent, failed, dropped := tr.Stats()
	assert.Equal(t, []int64{int64(len(want)), 0, 0}, []int64{sent, failed, dropped})
	require.ErrorIs(t, tr.Emit(t.Context(), want[0]), artifacts.ErrTransportClosed)
	require.NoError(t, tr.Close(t.Context()), "Close is idempotent")
}

func TestHTTPTransportRetries(t *testing.T) {
	tests := []struct {
		name         string
		status       func(n int64) int
		wantRequests int64
		wantErr      bool
		wantCode     int
	}{
		{"5xx then success", func(n int64) int {
			switch n {
			case 1:
				return 503
			case 2:
				return 500
			}
			return 201
		}, 3, false, 0},
		{"429 is retried", func(n int64) int {
			if n == 1 {
				return 429
			}
			return 201
		}, 2, false, 0},
		{"always failing gives up after retries", func(int64) int { return 502 }, 4, true, 502},
		{"4xx is not retried", func(int64) int { return 400 }, 1, true, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newLineageServer(t, tt.status)
			tr := artifacts.NewHTTPTransport(srv.URL+"/api/v1/lineage", artifacts.HTTPOptions{Backoff: fastBackoff, Logger: quiet()})
			ev := mustEvents(t)[0]
			require.NoError(t, tr.Emit(t.Context(), ev))
			err := tr.Close(t.Context())
			assert.Equal(t, tt.wantRequests, srv.requests.Load())
			if !tt.wantErr {
				require.NoError(t, err)
				require.Len(t, srv.events, 1)
				return
			}
			var de *artifacts.DeliveryError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.wantCode, de.StatusCode)
			assert.Equal(t, int(tt.wantRequests), de.Attempts)
			assert.Equal(t, ev.Run.RunID, de.RunID)
			_, failed, _ := tr.Stats()
			assert.Equal(t, int64(1), failed)
		})
	}
}

func mustEvents(t testing.TB) []*artifacts.RunEvent {
	t.Helper()
	events, err := (&artifacts.Lineage{}).Events(fixtureRun(t))
	require.NoError(t, err)
	return events
}

func TestHTTPTransportUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	tr := artifacts.NewHTTPTransport(url, artifacts.HTTPOptions{Backoff: fastBackoff, MaxRetries: 2, Logger: quiet()})
	require.NoError(t, tr.Emit(t.Context(), mustEvents(t)[0]))
	err := tr.Close(t.Context())
	var de *artifacts.DeliveryError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, 3, de.Attempts)
	assert.Zero(t, de.StatusCode)
}

// TestHTTPTransportDoesNotBlock checks that a hung endpoint never makes
// Emit (and so the build) wait: events queue, overflow is dropped, and
// Close with a deadline abandons what is left.
func TestHTTPTransportDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	tr := artifacts.NewHTTPTransport(srv.URL, artifacts.HTTPOptions{QueueSize: 4, Backoff: fastBackoff, Logger: quiet()})
	events := mustEvents(t)
	start := time.Now()
	var errs []error
	for i := range 10 {
		errs = append(errs, tr.Emit(t.Context(), events[i%len(events)]))
	}
	assert.Less(t, time.Since(start), time.Second, "Emit returns at once")
	var dropped int
	for _, err := range errs {
		if errors.Is(err, artifacts.ErrQueueFull) {
			dropped++
		} else {
			require.NoError(t, err)
		}
	}
	assert.GreaterOrEqual(t, dropped, 10-4-1, "at most the queue plus the one in flight are kept")

	require.Eventually(t, func() bool { return requests.Load() == 1 }, 10*time.Second, time.Millisecond, "the first event reaches the hung server")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, tr.Flush(ctx), context.DeadlineExceeded)

	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := tr.Close(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var de *artifacts.DeliveryError
	require.ErrorAs(t, err, &de, "the abandoned events are reported")
	assert.Less(t, time.Since(start), 2*time.Second)
	_, failed, droppedStat := tr.Stats()
	assert.Equal(t, int64(dropped), droppedStat)
	assert.Equal(t, int64(10-dropped), failed)
	assert.Equal(t, int64(1), requests.Load(), "one request was in flight; the rest were abandoned")
}

func TestDefaultRetryPolicy(t *testing.T) {
	resp := func(code int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	assert.True(t, artifacts.DefaultCheckRetry(nil, errors.New("connection refused")))
	assert.False(t, artifacts.DefaultCheckRetry(nil, context.Canceled))
	for code, want := range map[int]bool{200: false, 400: false, 401: false, 404: false, 408: true, 429: true, 500: true, 501: false, 502: true, 503: true} {
		assert.Equal(t, want, artifacts.DefaultCheckRetry(resp(code, ""), nil), "status %d", code)
	}
	assert.Equal(t, 250*time.Millisecond, artifacts.DefaultBackoff(1, nil))
	assert.Equal(t, time.Second, artifacts.DefaultBackoff(3, nil))
	assert.Equal(t, 10*time.Second, artifacts.DefaultBackoff(20, nil))
	assert.Equal(t, 7*time.Second, artifacts.DefaultBackoff(1, resp(503, "7")))
	assert.Equal(t, 30*time.Second, artifacts.DefaultBackoff(1, resp(503, "3600")))
}

func TestOpenTransport(t *testing.T) {
	tr, err := artifacts.OpenTransport("https://marquez.example:5000/api/v1/lineage", artifacts.HTTPOptions{})
	require.NoError(t, err)
	assert.IsType(t, &artifacts.HTTPTransport{}, tr)
	require.NoError(t, tr.Close(t.Context()))

	path := t.TempDir() + "/events.jsonl"
	tr, err = artifacts.OpenTransport(path, artifacts.HTTPOptions{})
	require.NoError(t, err)
	assert.Equal(t, &artifacts.FileTransport{Path: path}, tr)
	require.NoError(t, tr.Emit(t.Context(), mustEvents(t)[0]))
	require.NoError(t, tr.Close(t.Context()))

	_, err = artifacts.OpenTransport("", artifacts.HTTPOptions{})
	require.Error(t, err)
	_, err = artifacts.OpenTransport("http://%zz", artifacts.HTTPOptions{})
	require.Error(t, err)
}
