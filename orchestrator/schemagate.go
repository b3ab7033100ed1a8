package orchestrator

import (
	"context"
	"slices"
	"sync"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// schemaGate lets the first invocation that builds into a schema run alone
// until dbt has created that schema; after that, invocations on the schema
// run concurrently. dbt creates the schemas of an invocation's nodes at its
// start ("create schema if not exists"), which on PostgreSQL and other
// warehouses fails with a duplicate-key error when several processes do it
// at once; `dbt build` never races because it creates them once. The gate
// gives concurrent per-node invocations the same guarantee without creating
// anything itself.
type schemaGate struct {
	mu      sync.Mutex
	schemas map[string]*schemaState
}

type schemaState struct {
	slot  chan struct{} // capacity 1: held by the invocation creating it
	ready bool          // guarded by schemaGate.mu
}

// buildsInto returns the sorted database.schema keys the request's models,
// seeds and snapshots write to.
func buildsInto(nodes []*manifest.Node) []string {
	var keys []string
	for _, n := range nodes {
		switch n.ResourceType {
		case manifest.Model, manifest.Seed, manifest.Snapshot:
			if n.Schema != "" {
				keys = append(keys, n.Database+"."+n.Schema)
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// enter waits until every schema the request builds into is either known
// to exist or held by this invocation. The returned release must be called
// with the invocation's outcome.
func (g *schemaGate) enter(ctx context.Context, nodes []*manifest.Node) (release func(*executor.Response, error), err error) {
	var held []*schemaState
	release = func(resp *executor.Response, err error) {
		created := err == nil && resp != nil && slices.ContainsFunc(resp.Results, func(r executor.Result) bool {
			return r.Status == executor.Success
		})
		g.mu.Lock()
		for _, s := range held {
			s.ready = s.ready || created
		}
		g.mu.Unlock()
		for _, s := range held {
			<-s.slot
		}
	}
	for _, key := range buildsInto(nodes) { // sorted: no lock-order deadlock
		g.mu.Lock()
		if g.schemas == nil {
			g.schemas = map[string]*schemaState{}
		}
		s := g.schemas[key]
		if s == nil {
			s = &schemaState{slot: make(chan struct{}, 1)}
			g.schemas[key] = s
		}
		ready := s.ready
		g.mu.Unlock()
		if ready {
			continue
		}
		select {
		case s.slot <- struct{}{}:
		case <-ctx.Done():
			release(nil, ctx.Err())
			return nil, ctx.Err()
		}
		g.mu.Lock()
		ready = s.ready
		g.mu.Unlock()
		if ready { // created while we waited
			<-s.slot
			continue
		}
		held = append(held, s)
	}
	return release, nil
}
