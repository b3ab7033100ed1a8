package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
	"github.com/dbtorch/dbtorch/selector"
)

// Service runs dbt builds of one project on a schedule and on request.
// Scheduled and requested builds have orchestrators of their own (their
// own worker pools) but share the named limit "warehouse" from one
// orchestrator.Registry, so that together they never run more than the
// limit's nodes at once against the warehouse, and never build one
// relation twice at once. With a pglimit.Store the limit and the relation
// locks are shared by every instance of the service on the database.
type Service struct {
	log       *slog.Logger
	scheduled *orchestrator.Orchestrator
	requested *orchestrator.Orchestrator

	mu     sync.Mutex
	builds map[string]*buildState
	order  []string
	wg     sync.WaitGroup
}

// buildState is one build the service started.
type buildState struct {
	ID      string             `json:"id"`
	Trigger string             `json:"trigger"` // "schedule" or "http"
	Started time.Time          `json:"started"`
	Select  []string           `json:"select,omitempty"`
	Exclude []string           `json:"exclude,omitempty"`
	Status  string             `json:"status"` // running, success, failed, cancelled
	Error   string             `json:"error,omitempty"`
	Run     *artifacts.RunJSON `json:"-"`
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Executor executor.Executor
	Manifest *manifest.Manifest
	// Registry holds the shared named limits; WarehouseSlots is the size
	// of its "warehouse" limit.
	Registry       *orchestrator.Registry
	WarehouseSlots int
	// Store, when set, keeps the "warehouse" limit and the relation locks
	// in PostgreSQL instead of Registry: every service instance (and
	// `dbtorch build --limit-store`) on the same database shares them.
	Store *pglimit.Store
	// ScheduledConcurrency and RequestedConcurrency size each
	// orchestrator's worker pool.
	ScheduledConcurrency, RequestedConcurrency int
	Retry                                      orchestrator.RetryConfig
	Logger                                     *slog.Logger
}

// NewService returns a Service; it starts nothing.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Registry == nil {
		cfg.Registry = &orchestrator.Registry{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	applies := func(n *manifest.Node) bool {
		return n.ResourceType != manifest.UnitTest // unit tests barely touch the warehouse
	}
	// Relation locks first: a node waiting for another build to finish
	// its relation holds no warehouse slot.
	var locks, wh orchestrator.NodeLimit
	var err error
	if cfg.Store != nil {
		locks = cfg.Store.RelationLocks()
		wh, err = cfg.Store.NodeLimit("warehouse", cfg.WarehouseSlots, applies)
	} else {
		locks = cfg.Registry.RelationLocks()
		wh, err = cfg.Registry.NodeLimit("warehouse", cfg.WarehouseSlots, applies)
	}
	if err != nil {
		return nil, err
	}
	s := &Service{log: cfg.Logger, builds: map[string]*buildState{}}
	for _, o := range []struct {
		dst  **orchestrator.Orchestrator
		conc int
	}{{&s.scheduled, cfg.ScheduledConcurrency}, {&s.requested, cfg.RequestedConcurrency}} {
		orch, err := orchestrator.New(orchestrator.Config{
			Executor: cfg.Executor, Manifest: cfg.Manifest, Concurrency: o.conc, Retry: cfg.Retry,
			Limits:   []orchestrator.NodeLimit{locks, wh},
			Observer: orchestrator.NewSlogObserver(cfg.Logger), Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		*o.dst = orch
	}
	return s, nil
}

// Start begins a build in the background and returns its id. The build
// stops when ctx is done.
func (s *Service) Start(ctx context.Context, trigger string, opts orchestrator.BuildOptions) string {
	o := s.requested
	if trigger == "schedule" {
		o = s.scheduled
	}
	if opts.ID == "" {
		opts.ID = fmt.Sprintf("%s-%d", trigger, time.Now().UnixNano())
	}
	st := &buildState{ID: opts.ID, Trigger: trigger, Started: time.Now().UTC(), Select: opts.Selection.Select, Exclude: opts.Selection.Exclude, Status: "running"}
	s.mu.Lock()
	s.builds[st.ID] = st
	s.order = append(s.order, st.ID)
	s.mu.Unlock()
	s.wg.Go(func() {
		run, err := o.RunBuild(ctx, opts)
		s.mu.Lock()
		defer s.mu.Unlock()
		var be *orchestrator.BuildError
		switch {
		case run == nil:
			st.Status, st.Error = "failed", err.Error()
			return
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			st.Status = "cancelled"
		case errors.As(err, &be), err != nil:
			st.Status, st.Error = "failed", err.Error()
		default:
			st.Status = "success"
		}
		st.Run = artifacts.ResultsJSON(run)
	})
	return st.ID
}

// Schedule starts a full build every interval until ctx is done, skipping
// a tick while the previous scheduled build still runs.
func (s *Service) Schedule(ctx context.Context, every time.Duration, opts orchestrator.BuildOptions) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last string
	for {
		if last == "" || s.status(last) != "running" {
			last = s.Start(ctx, "schedule", opts)
		} else {
			s.log.Warn("previous scheduled build still running; skipping this tick", "build", last)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) status(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.builds[id]; b != nil {
		return b.Status
	}
	return ""
}

// Wait waits for every build the service started.
func (s *Service) Wait() { s.wg.Wait() }

// Handler serves the service's HTTP API:
//
//	POST /builds?select=S&exclude=S&full_refresh=true  start a build → 202 {"id": ...}
//	GET  /builds                                       every build, newest first, without results
//	GET  /builds/{id}                                  one build, with its results when finished
//
// Builds started over HTTP run under ctx (the service's lifetime), not
// under the request's.
func (s *Service) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /builds", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := orchestrator.BuildOptions{Selection: selector.Options{Select: q["select"], Exclude: q["exclude"]}, FullRefresh: q.Get("full_refresh") == "true"}
		if ts := q.Get("test_strategy"); ts != "" {
			st, err := manifest.ParseTestStrategy(ts)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			opts.Tests = st
		}
		// Resolve now, so that a bad selection is the caller's 400.
		if _, err := s.requested.Plan(r.Context(), opts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := s.Start(ctx, "http", opts)
		w.Header().Set("Location", "/builds/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
	})
	mux.HandleFunc("GET /builds", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		out := make([]buildState, 0, len(s.order))
		for _, id := range s.order {
			b := *s.builds[id]
			b.Run = nil
			out = append(out, b)
		}
		s.mu.Unlock()
		sort.SliceStable(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /builds/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.builds[r.PathValue("id")]
		var out buildState
		if ok {
			out = *b
		}
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			buildState
			Results *artifacts.RunJSON `json:"results,omitempty"`
		}{out, out.Run})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
