package orchestrator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/backoff"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// Skip reasons of nodes that were not run. A skip caused by a skipped
// upstream says "upstream skipped: <id>: <that node's reason>".
const (
	// ReasonUpstreamFailed: an ancestor ended in Error (see
	// NodeResult.FailedUpstream).
	ReasonUpstreamFailed = "upstream failed"
	// ReasonCancelled: the build's context was done before the node
	// started.
	ReasonCancelled = "build cancelled"
)

// BuildOptions are one build's options. The zero value builds every node
// with immediate tests.
type BuildOptions struct {
	// Selection chooses the nodes in dbt's syntax, as `dbt build` takes
	// it (select, exclude, selector, indirect selection, resource types,
	// state); its zero value, like no Select, Exclude, Selector or resource
	// type, builds every node. Config.Resolver (or the native selector)
	// resolves it. Selection.Indirect must be a known mode (or ""), else
	// the build fails naming it. Nodes whose code is empty are never built,
	// as in dbt build, whichever resolver answered, so ExcludeEmpty need
	// not be set (it is not passed on).
	Selection selector.Options
	// Tests says when tests run: manifest.Immediate (zero value),
	// manifest.Deferred or manifest.SkipTests.
	Tests manifest.TestStrategy
	// FullRefresh passes --full-refresh to dbt and bypasses cache reads.
	FullRefresh bool
	// OnlyFreshSources skips nodes that read a stale source, and their
	// descendants. It needs a Cache that implements StaleChecker.
	OnlyFreshSources bool
	// Vars are merged over Config.Vars for this build.
	Vars map[string]any
	// ID identifies the run; empty means a new random UUID.
	ID string
	// EventTimeStart and EventTimeEnd bound the event time of the
	// batches microbatch models build (dbt's --event-time-start and
	// --event-time-end; the zero time leaves one out). They reach only the
	// invocations whose dbt command takes them (run and build; never
	// seed, snapshot or test), as executor.Request says. dbt's batch
	// results are in NodeResult.Batches. Recorded as Args
	// event_time_start and event_time_end.
	EventTimeStart, EventTimeEnd time.Time
	// Attempt numbers this build among the builds of one run (one ID): 0
	// or 1 for the first; Retry sets the earlier attempt's number plus
	// one. Above 1 it is recorded as Args["attempt"] (AttemptArg).
	Attempt int
}

// BuildPlan is what a build would do, computed without running anything.
type BuildPlan struct {
	// Plan holds the planned nodes, their dependencies and waves.
	*manifest.Plan
	// Cached lists the nodes predicted to be served from the cache, in
	// plan order.
	Cached []string
	// Keys holds the cache key of each cacheable node, when caching is on.
	Keys map[string]string
	// Reasons says, for each node in Keys, why it is predicted to be
	// served from the cache or to run (see NodeResult.CacheReason).
	Reasons map[string]string
	// Skipped maps the nodes predicted to be skipped before anything runs
	// (stale sources) to the reason.
	Skipped map[string]string
	// Warnings are the build's warnings known before it runs (see
	// Run.Warnings).
	Warnings []string
}

// Plan resolves the selection and returns the plan of the build opts
// describes, with predicted cache hits and skips, without running dbt.
func (o *Orchestrator) Plan(ctx context.Context, opts BuildOptions) (*BuildPlan, error) {
	b, err := o.newBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	bp := &BuildPlan{Plan: b.plan, Skipped: map[string]string{}, Warnings: b.warnings}
	for i, r := range b.stale {
		bp.Skipped[b.plan.ID(i)] = r
	}
	if b.cache == nil {
		return bp, nil
	}
	bp.Keys, bp.Reasons = map[string]string{}, map[string]string{}
	for i := range int32(b.n) {
		hit, _, err := b.cacheStep(ctx, i, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("orchestrator: cache key of %s: %w", b.plan.ID(i), err)
		}
		id, res := b.plan.ID(i), &b.results[i]
		if res.CacheKey == "" {
			continue
		}
		bp.Keys[id], bp.Reasons[id] = res.CacheKey, res.CacheReason
		if hit {
			bp.Cached = append(bp.Cached, id)
		}
	}
	// Skips propagate to descendants.
	for i := range int32(b.n) {
		if _, ok := bp.Skipped[b.plan.ID(i)]; ok {
			continue
		}
		for _, u := range b.plan.Upstream(i) {
			if r, ok := bp.Skipped[b.plan.ID(u)]; ok {
				bp.Skipped[b.plan.ID(i)] = upstreamSkipped(b.plan.ID(u), r)
				break
			}
		}
	}
	return bp, nil
}

func upstreamSkipped(id, reason string) string {
	return "upstream skipped: " + id + ": " + reason
}

// RunBuild runs the build opts describes and returns its Run, with one
// result per planned node in plan order, each with exactly one terminal
// status.
//
// In PerNode mode every node starts as soon as all its planned upstreams
// have finished (or, with StrictWaves, when all earlier waves have),
// subject to Concurrency and the node's limits; ready nodes are taken in
// Priority order. A node that fails after its retries ends in Error and
// every planned descendant is Skipped with FailedUpstream naming the failed
// ancestors; independent branches go on. In PerWave mode each wave is one
// `dbt build` invocation over the wave's runnable nodes.
//
// When ctx is done, RunBuild stops starting nodes, cancels the running
// invocations, waits for them, and returns: nodes that were running end in
// Error (KindCancelled), nodes that had not started in Skipped
// (ReasonCancelled). RunBuild never leaves a goroutine or an invocation
// running behind it.
//
// The project's on-run-start and on-run-end hooks run once, before the
// first node and after the last, when the executor implements
// executor.HookRunner (hooks.go has the rules); a failed on-run-start
// skips every node.
//
// The error is non-nil when the build could not start (bad selection, no
// manifest: the Run is then nil), when nodes failed (a *BuildError, with
// the full Run), when a phase of the project's hooks failed (a
// *HookError, joined), when ctx was done (ctx's error, joined), or when a
// Reporter failed (joined).
func (o *Orchestrator) RunBuild(ctx context.Context, opts BuildOptions) (*Run, error) {
	b, err := o.newBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	run := &Run{
		ID:        b.runID,
		StartedAt: o.cfg.Now(),
		Manifest:  b.m,
		Plan:      b.plan,
		Args:      b.args(),
	}
	b.emit(ctx, Event{Type: RunStarted, Plan: b.plan})
	var errs []error
	startErr := b.startHooks(ctx)
	switch {
	case startErr != nil:
		b.skipAll(ctx, startErr)
		errs = append(errs, startErr)
	case o.cfg.Mode == PerWave:
		b.runPerWave(ctx)
	default:
		b.runPerNode(ctx)
	}
	if err := b.endHooks(ctx, startErr == nil); err != nil {
		errs = append(errs, err)
	}
	run.Results = b.results
	run.Hooks = b.hookResults
	run.Warnings = b.warnings
	run.CompletedAt = o.cfg.Now()
	b.emit(ctx, Event{Type: RunFinished, Run: run})

	if b.prepErr != nil {
		errs = append(errs, b.prepErr)
	}
	if be := buildError(run); be != nil {
		errs = append(errs, be)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, context.Cause(ctx))
	}
	rctx := context.WithoutCancel(ctx)
	for _, r := range o.cfg.Reporters {
		if err := r.Report(rctx, run); err != nil {
			errs = append(errs, fmt.Errorf("orchestrator: reporter: %w", err))
		}
	}
	return run, errors.Join(errs...)
}

func buildError(run *Run) *BuildError {
	var be BuildError
	for i := range run.Results {
		r := &run.Results[i]
		switch {
		case r.Status == Error:
			be.Failed = append(be.Failed, r.UniqueID)
		case r.Status == Skipped && len(r.FailedUpstream) > 0:
			be.Skipped++
		}
	}
	if len(be.Failed) == 0 {
		return nil
	}
	sort.Strings(be.Failed)
	return &be
}

// build is the state of one RunBuild or Plan call. Nodes are indexed by
// their plan index (manifest.Plan): the plan's nodes, upstreams,
// downstreams and waves are read from it directly.
type build struct {
	o     *Orchestrator
	cfg   *Config
	runID string
	opts  BuildOptions
	vars  map[string]any
	m     *manifest.Manifest
	g     *manifest.Graph
	plan  *manifest.Plan

	n       int // plan.Len()
	conc    int // Config.Concurrency, capped by the executor (concurrency)
	stale   map[int32]string
	results []NodeResult
	// cache is the build's cache (Config.Cache, or what its ForBuild
	// returned); nil when caching is off or failed to open.
	cache Cache
	// warnings are the build's warnings (Run.Warnings).
	warnings []string

	obsMu sync.Mutex

	prepOnce sync.Once
	prepErr  error
	// schemaState is the build's schema creation state (schemas.go).
	schemaState buildSchemas
	// hooks runs the project's hooks once for the build (hooks.go), nil
	// when the invocations run them; noHooks is then set on every
	// request. hookResults are the hooks' results, in the order run.
	hooks       executor.HookRunner
	noHooks     bool
	hookResults []executor.Result
}

// execute runs one invocation. The executor is prepared (Preparer) before
// the build's first invocation, not before the build: a build that runs
// nothing (all cached, all skipped) starts no dbt. When preparing fails,
// every invocation of the build fails with that error. Each invocation
// gets Config.NodeTimeout; nodes it cut off are KindTimeout. (The schemas
// an invocation writes to are created before, by awaitSchemas, outside
// the timeout.)
func (b *build) execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	b.prepOnce.Do(func() { b.prepErr = b.o.prepare(ctx) })
	if b.prepErr != nil {
		return nil, b.prepErr
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if b.cfg.NodeTimeout > 0 {
		actx, cancel = context.WithTimeout(ctx, b.cfg.NodeTimeout)
	}
	defer cancel()
	resp, err := b.cfg.Executor.Execute(actx, req)
	if resp != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		// Our timeout, not the build's cancellation.
		for k := range resp.Results {
			if r := &resp.Results[k]; r.Status != executor.Success && r.Kind == executor.KindCancelled {
				r.Kind = executor.KindTimeout
			}
		}
	}
	return resp, err
}

func (o *Orchestrator) newBuild(ctx context.Context, opts BuildOptions) (*build, error) {
	m, g, err := o.graph(ctx)
	if err != nil {
		return nil, err
	}
	sel := opts.Selection
	if sel.Indirect, err = selector.ParseIndirectMode(string(sel.Indirect)); err != nil {
		return nil, fmt.Errorf("orchestrator: selection: %w", err)
	}
	opts.Selection = sel
	var selected []string // nil: every node
	if !selectsAll(sel) {
		if selected, err = o.resolve(ctx, g, sel); err != nil {
			return nil, fmt.Errorf("orchestrator: selection: %w", err)
		}
	}
	switch opts.Tests {
	case manifest.Immediate, manifest.Deferred, manifest.SkipTests:
	default:
		return nil, fmt.Errorf("orchestrator: unknown test strategy %v", opts.Tests)
	}
	p := g.Plan(selected, opts.Tests)
	b := &build{warnings: o.selectionWarnings(ctx, g, sel, p.Len()), o: o, cfg: &o.cfg, opts: opts, m: m, g: g, plan: p, runID: opts.ID,
		n: p.Len(), stale: map[int32]string{}, results: make([]NodeResult, p.Len())}
	// Edges dbtorch inferred from sources naming relations the build writes
	// (issue 21; manifest.Plan.Warnings): dbt does not order them.
	b.warnings = append(b.warnings, p.Warnings()...)
	if b.runID == "" {
		b.runID = newUUID()
	}
	b.vars = o.cfg.Vars
	if len(opts.Vars) > 0 {
		b.vars = maps.Clone(o.cfg.Vars)
		if b.vars == nil {
			b.vars = map[string]any{}
		}
		maps.Copy(b.vars, opts.Vars)
	}
	for i := range int32(b.n) {
		n := p.Node(i)
		b.results[i] = NodeResult{Result: executor.Result{UniqueID: n.UniqueID}, Name: n.Name, ResourceType: n.ResourceType, Wave: p.Wave(i)}
	}
	var capped string
	if b.conc, capped = o.Concurrency(); capped != "" {
		b.warnings = append(b.warnings, fmt.Sprintf("concurrency %d reduced to %d: %s", o.cfg.Concurrency, b.conc, capped))
	}
	b.cache = o.cfg.Cache
	cacheFailed := false
	if bc, ok := b.cache.(BuildCache); ok {
		info := BuildInfo{Manifest: m, Graph: g, Vars: b.vars, FullRefresh: opts.FullRefresh, RunID: b.runID}
		info.Relations, _ = o.cfg.Executor.(executor.RelationLister)
		c, err := bc.ForBuild(ctx, info)
		if err == nil && c == nil {
			err = errors.New("ForBuild returned no cache")
		}
		if err != nil {
			o.log.WarnContext(ctx, "cache unavailable for this build; running every node", "error", err)
			b.warnings = append(b.warnings, "cache unavailable for this build, so every node runs (none served from the cache or skipped as stale): "+err.Error())
			c, cacheFailed = nil, true
		}
		b.cache = c
	}
	if w, ok := b.cache.(Warner); ok {
		b.warnings = append(b.warnings, w.Warnings()...)
	}
	if opts.OnlyFreshSources && b.n > 0 && !cacheFailed {
		sc, ok := b.cache.(StaleChecker)
		if !ok {
			return nil, errors.New("orchestrator: OnlyFreshSources needs a Cache that implements StaleChecker")
		}
		stale, err := sc.StaleNodes(ctx, g, p.Nodes())
		if err != nil {
			return nil, fmt.Errorf("orchestrator: source freshness: %w", err)
		}
		for id, reason := range stale {
			if i, ok := p.Index(id); ok {
				b.stale[i] = reason
			}
		}
	}
	return b, nil
}

func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// args records the build's options as dbt-style arguments.
func (b *build) args() map[string]any {
	a := map[string]any{
		"which":              "build",
		"select":             nonNil(b.opts.Selection.Select),
		"exclude":            nonNil(b.opts.Selection.Exclude),
		"full_refresh":       b.opts.FullRefresh,
		"indirect_selection": string(b.opts.Selection.Indirect),
		"test_strategy":      b.opts.Tests.String(),
		"mode":               b.cfg.Mode.String(),
		"threads":            b.conc,
	}
	if b.opts.Attempt > 1 {
		a[AttemptArg] = b.opts.Attempt
	}
	for k, t := range map[string]time.Time{"event_time_start": b.opts.EventTimeStart, "event_time_end": b.opts.EventTimeEnd} {
		if !t.IsZero() {
			a[k] = t.UTC().Format(time.RFC3339)
		}
	}
	if b.opts.Selection.Selector != "" {
		a["selector"] = b.opts.Selection.Selector
	}
	if len(b.vars) > 0 {
		a["vars"] = b.vars
	}
	return a
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// emit sends e to the observer, serialized.
func (b *build) emit(ctx context.Context, e Event) {
	obs := b.cfg.Observer
	if obs == nil {
		return
	}
	e.RunID = b.runID
	if e.Time.IsZero() {
		e.Time = b.cfg.Now()
	}
	b.obsMu.Lock()
	defer b.obsMu.Unlock()
	obs.Event(ctx, e)
}

// skipCause decides whether node i must be skipped because of its
// upstreams or a stale source, from the upstreams' final results. It
// returns the failed ancestors (sorted) and the reason, or "" to run.
func (b *build) skipCause(i int32) (failed []string, reason string) {
	var other string
	for _, u := range b.plan.Upstream(i) {
		r := &b.results[u]
		switch r.Status {
		case Error:
			failed = append(failed, b.plan.ID(u))
		case Skipped:
			if len(r.FailedUpstream) > 0 {
				failed = append(failed, r.FailedUpstream...)
			} else if other == "" {
				other = upstreamSkipped(b.plan.ID(u), r.SkipReason)
			}
		}
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		return slices.Compact(failed), ReasonUpstreamFailed
	}
	if other != "" {
		return nil, other
	}
	if r := b.stale[i]; r != "" {
		return nil, r
	}
	return nil, ""
}

// skip ends node i as Skipped.
func (b *build) skip(i int32, failed []string, reason string) {
	r := &b.results[i]
	r.Status = Skipped
	r.SkipReason = reason
	r.FailedUpstream = failed
	r.DBTStatus = ""
	if len(failed) > 0 {
		r.Message = "skipped: upstream failed: " + joinShort(failed)
	} else {
		r.Message = "skipped: " + reason
	}
}

// NoOpStatus is the DBTStatus of an exposure or saved query (Node.NoOp):
// dbt build reports such a node as "no-op" once its upstreams are done,
// and dbtorch ends it the same way (Status Success, Message "NO-OP")
// without running dbt; when an upstream failed it is Skipped, as in dbt.
const NoOpStatus = "no-op"

// noOp ends node i, an exposure or saved query, as dbt build reports it:
// a success that ran nothing.
func (b *build) noOp(i int32) {
	r := &b.results[i]
	now := b.cfg.Now()
	r.Result.Status, r.DBTStatus, r.Message = executor.Success, NoOpStatus, "NO-OP"
	r.Status, r.StartedAt, r.CompletedAt = Success, now, now
}

func joinShort(ids []string) string {
	const show = 3
	s := ""
	for k, id := range ids {
		if k == show {
			return s + fmt.Sprintf(" and %d more", len(ids)-show)
		}
		if k > 0 {
			s += ", "
		}
		s += id
	}
	return s
}

// limitsFor returns the limits that apply to any of the nodes.
func (b *build) limitsFor(nodes ...*manifest.Node) []NodeLimit {
	var out []NodeLimit
	for _, l := range b.cfg.Limits {
		if l.ForNode != nil {
			out = append(out, keyedLimits(l, nodes)...)
			continue
		}
		if l.Applies == nil {
			out = append(out, l)
			continue
		}
		for _, n := range nodes {
			if l.Applies(n) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// acquire takes one slot of each limit in order; on failure it releases
// what it took and returns the error.
func acquire(ctx context.Context, ls []NodeLimit) error {
	for k, l := range ls {
		if err := l.Limiter.Acquire(ctx); err != nil {
			release(ls[:k])
			return fmt.Errorf("limit %q: %w", l.Name, err)
		}
	}
	return nil
}

func release(ls []NodeLimit) {
	for k := len(ls) - 1; k >= 0; k-- {
		ls[k].Limiter.Release()
	}
}

// slots are the limit slots one invocation's nodes hold. They are let go
// while a retry waits out its delay, so that other nodes can use them.
type slots struct {
	ls   []NodeLimit
	held bool
}

// takeSlots acquires one slot of each of ls (see acquire).
func takeSlots(ctx context.Context, ls []NodeLimit) (*slots, error) {
	if err := acquire(ctx, ls); err != nil {
		return nil, err
	}
	return &slots{ls: ls, held: true}, nil
}

// retryAfter releases the slots, sleeps delay and takes them again. It
// returns how long taking them again waited, and false when ctx ended
// first (the slots are then not held).
func (s *slots) retryAfter(ctx context.Context, delay time.Duration, now func() time.Time) (time.Duration, bool) {
	release(s.ls)
	s.held = false
	if !backoff.Sleep(ctx, delay) {
		return 0, false
	}
	t0 := now()
	if err := acquire(ctx, s.ls); err != nil {
		return 0, false
	}
	s.held = true
	return now().Sub(t0), true
}

// done releases the slots if they are held.
func (s *slots) done() {
	if s.held {
		release(s.ls)
		s.held = false
	}
}

// request returns the executor request for nodes: one node, or nodes of
// one wave, which never depend on one another (Independent).
func (b *build) request(cmd executor.Command, attempt int, nodes ...*manifest.Node) executor.Request {
	return executor.Request{
		Command:     cmd,
		Nodes:       nodes,
		FullRefresh: b.opts.FullRefresh,
		Vars:        b.vars,
		BuildID:     b.runID,
		Attempt:     attempt,
		NoHooks:     b.noHooks,
		Independent: true,

		EventTimeStart: b.opts.EventTimeStart,
		EventTimeEnd:   b.opts.EventTimeEnd,
	}
}

// attempted makes er, the result of the node's latest attempt in
// invocation inv, the node's result, and sets the build's verdict from it.
func (r *NodeResult) attempted(er executor.Result, inv executor.Invocation) {
	if er.RelationName == "" {
		er.RelationName = r.RelationName // an earlier attempt's
	}
	r.Result = er
	r.Invocation = &inv
	switch er.Status {
	case executor.Success:
		r.Status = Success
		r.Err = nil
	case executor.Reused:
		// dbt reused an earlier run's result: served, as from a cache.
		r.Status = Cached
		r.Err = nil
		r.CacheReason = reusedReason(&er)
	case executor.Cancelled:
		r.Status = Error
		r.Err = &NodeError{Kind: cmpKind(er.Kind, executor.KindCancelled), Message: cmpOr(er.Message, "cancelled")}
	case executor.Skipped:
		// dbt skipped it within a multi-node invocation (it saw a failure
		// upstream of the node in the same invocation).
		r.Status = Skipped
		r.Err = nil
		r.SkipReason = cmpOr(er.Message, "skipped by dbt")
	default:
		r.Status = Error
		r.Err = &NodeError{Kind: cmpKind(er.Kind, executor.KindUnknown), Message: er.Message}
	}
}

func cmpKind(k, def executor.Kind) executor.Kind {
	if k == executor.KindNone {
		return def
	}
	return k
}

// resultsFor matches a response to the requested nodes with
// executor.Complete, so every node gets exactly one result: a node the
// executor omitted is an error of KindCrash, and every node is an error of
// KindInternal when the executor failed to attempt the request.
func resultsFor(nodes []*manifest.Node, resp *executor.Response, err error) ([]executor.Result, executor.Invocation) {
	if err != nil || resp == nil {
		msg := "executor returned no response"
		if err != nil {
			msg = err.Error()
		}
		var inv executor.Invocation
		if resp != nil {
			inv = resp.Invocation
		}
		return executor.Complete(nodes, nil, nil, &executor.Failure{Kind: executor.KindInternal, Message: msg}), inv
	}
	return executor.Complete(nodes, resp.Results, nil, &executor.Failure{Kind: executor.KindCrash,
		Message: "executor reported no result for the node"}), resp.Invocation
}

// attemptOf records one attempt.
func attemptOf(num int, start, end time.Time, er *executor.Result, inv executor.Invocation) Attempt {
	return Attempt{Number: num, StartedAt: start, CompletedAt: end, Status: er.Status, Kind: er.Kind, Message: er.Message, Invocation: inv}
}
