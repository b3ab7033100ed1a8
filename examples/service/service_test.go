package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// sleepExec sleeps a little per request and records the peak number of
// requests running at once.
type sleepExec struct{ active, peak atomic.Int64 }

func (s *sleepExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	a := s.active.Add(1)
	defer s.active.Add(-1)
	for p := s.peak.Load(); a > p && !s.peak.CompareAndSwap(p, a); p = s.peak.Load() {
	}
	select {
	case <-time.After(3 * time.Millisecond):
	case <-ctx.Done():
	}
	resp := &executor.Response{}
	for _, n := range req.Nodes {
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Success})
	}
	return resp, nil
}

// wideManifest has n independent models.
func wideManifest(n int) *manifest.Manifest {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for i := range n {
		id := fmt.Sprintf("model.p.m%d", i)
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: fmt.Sprintf("m%d", i), ResourceType: manifest.Model, PackageName: "p",
			Path: "m.sql", OriginalFilePath: "models/m.sql", Enabled: true, Materialized: "table", RawCode: "select 1",
			FQN: []string{"p", fmt.Sprintf("m%d", i)}}
	}
	return m
}

func TestServiceSharesWarehouseLimit(t *testing.T) {
	ex := &sleepExec{}
	svc, err := NewService(ServiceConfig{Executor: ex, Manifest: wideManifest(40), WarehouseSlots: 3,
		ScheduledConcurrency: 3, RequestedConcurrency: 3, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := httptest.NewServer(svc.Handler(ctx))
	defer srv.Close()

	sched := svc.Start(ctx, "schedule", orchestrator.BuildOptions{})
	resp, err := http.Post(srv.URL+"/builds?select=m1+m2+m3", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var started map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&started))
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/builds", "", nil)
	require.NoError(t, err)
	resp.Body.Close()

	resp, err = http.Post(srv.URL+"/builds?select="+url.QueryEscape("@m1+"), "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	svc.Wait()
	assert.LessOrEqual(t, ex.peak.Load(), int64(3), "scheduled and requested builds share three warehouse slots")
	assert.Equal(t, int64(3), ex.peak.Load())

	resp, err = http.Get(srv.URL + "/builds/" + started["id"])
	require.NoError(t, err)
	defer resp.Body.Close()
	var got struct {
		Status  string
		Results *orchestrator.RunJSON
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	assert.Equal(t, "success", got.Status)
	require.NotNil(t, got.Results)
	assert.Len(t, got.Results.Results, 3)
	assert.Equal(t, "success", svc.status(sched))
}

// TestServiceInstancesSharePostgresLimit runs two service instances, each
// with its own pglimit.Store on the test harness's PostgreSQL (as two
// processes would have), building the same project at once: together
// they never run more than the warehouse's two slots of nodes, and they
// use both.
func TestServiceInstancesSharePostgresLimit(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", pg.User, pg.Host, pg.Port, pg.DBName)
	ex := &sleepExec{}
	m := wideManifest(16)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var svcs []*Service
	for range 2 {
		store, err := pglimit.Open(ctx, url, pglimit.Options{Lease: 2 * time.Second, Poll: 5 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, store.Close()) })
		svc, err := NewService(ServiceConfig{Executor: ex, Manifest: m, Store: store, WarehouseSlots: 2,
			ScheduledConcurrency: 4, RequestedConcurrency: 4, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		svcs = append(svcs, svc)
	}
	var ids []string
	for _, svc := range svcs {
		ids = append(ids, svc.Start(ctx, "http", orchestrator.BuildOptions{}))
	}
	for k, svc := range svcs {
		svc.Wait()
		assert.Equal(t, "success", svc.status(ids[k]))
	}
	assert.Equal(t, int64(2), ex.peak.Load(), "two instances share two warehouse slots, and fill them")
}
