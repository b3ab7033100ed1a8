package orchestrator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// Schemas. dbt creates the schemas of an invocation's nodes at its start
// ("create schema if not exists"); on PostgreSQL and other warehouses two
// processes doing that at once fail with a duplicate-key error, which one
// `dbt build` never meets because it creates all its schemas once, before
// its first node. With an executor that implements executor.SchemaCreator
// a build does the same: before the first invocation into a schema, the
// schemas the build writes to are created in one call; invocations into a
// schema that exists run concurrently, and dbt finds the schema and
// creates nothing. A node waiting for the creation waits (WaitTime, not
// NodeTimeout); a node whose build is cancelled while it waits never ran
// and is Skipped (ReasonCancelled); a creation that fails fails the
// attempt of every node waiting for it, with the creation's error, and
// the retry policy decides as for any other failure (a retry creates
// again). Nothing is serialised: every waiter shares one creation, and
// invocations never wait for one another. Builds of one Orchestrator share
// creations in flight; each build creates its schemas once (as dbt build
// does each time it runs). Without a SchemaCreator, or with one whose
// SerialSchemas says that its invocations never create schemas at once
// (executor.SerialSchemaCreator: a warm executor of one worker), every
// invocation creates its own schemas, as dbt does, and no node waits for
// a separate creation. A build that runs the project's hooks itself
// (hooks.go) creates none: dbt created them all before on-run-start.

// schemaKey is a schema's identity: database and schema, lower-cased.
func schemaKey(s executor.Schema) string {
	return strings.ToLower(s.Database) + "." + strings.ToLower(s.Schema)
}

// writesSchema returns the schema n is materialized in, as dbt's
// get_model_schemas finds it: models (not ephemeral), seeds, snapshots
// and functions.
func writesSchema(n *manifest.Node) (executor.Schema, bool) {
	switch n.ResourceType {
	case manifest.Model, manifest.Seed, manifest.Snapshot, manifest.Function:
	default:
		return executor.Schema{}, false
	}
	if n.Schema == "" || n.Materialized == "ephemeral" {
		return executor.Schema{}, false
	}
	return executor.Schema{Database: n.Database, Schema: n.Schema}, true
}

// schemasOf returns the distinct schemas nodes write to, sorted by key.
func schemasOf(nodes []*manifest.Node) []executor.Schema {
	seen := map[string]bool{}
	var out []executor.Schema
	for _, n := range nodes {
		if s, ok := writesSchema(n); ok && !seen[schemaKey(s)] {
			seen[schemaKey(s)] = true
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b executor.Schema) int { return strings.Compare(schemaKey(a), schemaKey(b)) })
	return out
}

// schemaFlights are an Orchestrator's schema creations in flight, by key,
// shared by its builds.
type schemaFlights struct {
	mu       sync.Mutex
	inflight map[string]*schemaCreation
}

// schemaCreation is one CreateSchemas call; err is set before done is
// closed.
type schemaCreation struct {
	schemas []executor.Schema
	done    chan struct{}
	err     error
}

// buildSchemas is one build's schema state, guarded by the
// Orchestrator's schemaFlights.mu.
type buildSchemas struct {
	created map[string]bool
	// all are the schemas of the build's planned nodes, computed at the
	// first claim.
	all []executor.Schema
	// failed is set when a creation of this build failed: later creations
	// then ask only for the schemas of the nodes at hand, so that one bad
	// schema does not fail the nodes of the others.
	failed bool
}

// claim returns the creations the caller must wait for to have every
// schema of need in b: those in flight, and lead, a new creation the
// caller must run (nil when none). The first creation of a build asks for
// every schema of the build's plan that is not created or in flight.
func (f *schemaFlights) claim(b *build, need []executor.Schema) (lead *schemaCreation, waits []*schemaCreation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inflight == nil {
		f.inflight = map[string]*schemaCreation{}
	}
	bs := &b.schemaState
	if bs.created == nil {
		bs.created = map[string]bool{}
	}
	var mine []executor.Schema
	want := func(s executor.Schema) {
		k := schemaKey(s)
		if bs.created[k] {
			return
		}
		if c := f.inflight[k]; c != nil {
			if !slices.Contains(waits, c) {
				waits = append(waits, c)
			}
			return
		}
		if !slices.ContainsFunc(mine, func(m executor.Schema) bool { return schemaKey(m) == k }) {
			mine = append(mine, s)
		}
	}
	for _, s := range need {
		want(s)
	}
	if len(mine) > 0 && !bs.failed {
		// The build's first creation: every schema it will write to.
		if bs.all == nil {
			nodes := make([]*manifest.Node, b.n)
			for i := range int32(b.n) {
				nodes[i] = b.plan.Node(i)
			}
			bs.all = schemasOf(nodes)
		}
		for _, s := range bs.all {
			if !bs.created[schemaKey(s)] && f.inflight[schemaKey(s)] == nil {
				want(s)
			}
		}
	}
	if len(mine) == 0 {
		return nil, waits
	}
	lead = &schemaCreation{schemas: mine, done: make(chan struct{})}
	for _, s := range mine {
		f.inflight[schemaKey(s)] = lead
	}
	return lead, waits
}

// exist records that the schemas exist for b: dbt created them before the
// build's on-run-start hooks, as dbt build's before_run does.
func (f *schemaFlights) exist(b *build, schemas []executor.Schema) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.schemaState.created == nil {
		b.schemaState.created = map[string]bool{}
	}
	for _, s := range schemas {
		b.schemaState.created[schemaKey(s)] = true
	}
}

// settle records the outcome of a creation c that b ran or waited for.
func (f *schemaFlights) settle(b *build, c *schemaCreation, led bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if led {
		for _, s := range c.schemas {
			if f.inflight[schemaKey(s)] == c {
				delete(f.inflight, schemaKey(s))
			}
		}
	}
	if c.err == nil {
		for _, s := range c.schemas {
			b.schemaState.created[schemaKey(s)] = true
		}
	} else if !isCtxErr(c.err) {
		b.schemaState.failed = true
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// SchemaError reports that the schemas a node is built into could not be
// created before it ran; the node's attempt fails with it.
type SchemaError struct {
	// Schemas are the schemas ("database.schema") the failed creation
	// asked for.
	Schemas []string
	// Err is the executor's error.
	Err error
}

func (e *SchemaError) Error() string {
	return "creating schemas " + strings.Join(e.Schemas, ", ") + " before the node: " + e.Err.Error()
}

func (e *SchemaError) Unwrap() error { return e.Err }

// awaitSchemas makes sure the schemas nodes write to exist before they
// run (see the comment at the top of this file). It returns how long it
// waited, and an error: ctx's when the build was cancelled first (the
// nodes did not run), or a *SchemaError when the creation failed.
func (b *build) awaitSchemas(ctx context.Context, nodes []*manifest.Node) (time.Duration, error) {
	sc, ok := b.cfg.Executor.(executor.SchemaCreator)
	if !ok {
		return 0, nil
	}
	if ss, ok := sc.(executor.SerialSchemaCreator); ok && ss.SerialSchemas() {
		return 0, nil
	}
	need := schemasOf(nodes)
	if len(need) == 0 {
		return 0, nil
	}
	f := &b.o.schemas
	t0 := b.cfg.Now()
	for {
		lead, waits := f.claim(b, need)
		if lead == nil && len(waits) == 0 {
			return b.cfg.Now().Sub(t0), nil
		}
		if lead != nil {
			b.o.log.DebugContext(ctx, "creating schemas", "schemas", keysOf(lead.schemas), "build", b.runID)
			lead.err = sc.CreateSchemas(ctx, lead.schemas)
			f.settle(b, lead, true) // before waking the waiters: no one joins a finished creation
			close(lead.done)
			if err := failed(ctx, lead, need); err != nil {
				return b.cfg.Now().Sub(t0), err
			}
		}
		for _, c := range waits {
			select {
			case <-c.done:
			case <-ctx.Done():
				return b.cfg.Now().Sub(t0), ctx.Err()
			}
			f.settle(b, c, false)
			if err := failed(ctx, c, need); err != nil {
				return b.cfg.Now().Sub(t0), err
			}
		}
		// Loop: a creation cancelled by another build's context is run
		// again by this one; otherwise the next claim finds everything
		// created.
	}
}

// failed returns the error a node needing need and waiting for c ends
// its attempt with, or nil to claim again: when c succeeded, was
// cancelled by another build, or failed while asking for more schemas
// than need (a build's first creation asks for all of them; the next one
// asks for need alone, so that only the nodes of a schema that cannot be
// created fail).
func failed(ctx context.Context, c *schemaCreation, need []executor.Schema) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case c.err == nil || isCtxErr(c.err):
		return nil
	}
	for _, s := range c.schemas {
		if !slices.ContainsFunc(need, func(n executor.Schema) bool { return schemaKey(n) == schemaKey(s) }) {
			return nil
		}
	}
	return &SchemaError{Schemas: keysOf(c.schemas), Err: c.err}
}

func keysOf(schemas []executor.Schema) []string {
	out := make([]string, len(schemas))
	for i, s := range schemas {
		out[i] = s.Schema
		if s.Database != "" {
			out[i] = s.Database + "." + s.Schema
		}
	}
	return out
}

// schemaFailure is the response of an attempt whose schemas could not be
// created: every node fails with err, of the kind dbt's message gives
// (KindDatabase when it says nothing more).
func schemaFailure(req executor.Request, err error, at time.Time) *executor.Response {
	kind := executor.ClassifyMessage(err.Error())
	if kind == executor.KindUnknown {
		kind = executor.KindDatabase
	}
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Started: at, Ended: at, ExitCode: -1}}
	for _, n := range req.Nodes {
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Error, Kind: kind, Message: err.Error()})
	}
	return resp
}

// attempt runs one attempt of req after awaitSchemas returned schemaErr:
// the attempt fails with a *SchemaError without running dbt, else the
// executor runs it.
func (b *build) attempt(ctx context.Context, req executor.Request, schemaErr error) (*executor.Response, error) {
	if schemaErr != nil {
		return schemaFailure(req, schemaErr, b.cfg.Now()), nil
	}
	return b.execute(ctx, req)
}
