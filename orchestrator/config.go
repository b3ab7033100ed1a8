package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/enum"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// Mode says how nodes are grouped into dbt invocations.
type Mode int

const (
	// PerNode runs every node as its own dbt invocation (run, seed,
	// snapshot or test), started as soon as all its upstreams finished.
	PerNode Mode = iota
	// PerWave runs one `dbt build` per wave over the wave's nodes (indirect
	// selection off), waves one after the other.
	PerWave
)

// modes names the modes, in the order of their values.
var modes = enum.Names[Mode]{"per-node", "per-wave"}

// String returns "per-node" or "per-wave".
func (m Mode) String() string { return modes.String(m, "Mode") }

// ParseMode parses "per-node" (or "") and "per-wave".
func ParseMode(s string) (Mode, error) {
	return modes.Parse(s, PerNode, "orchestrator: unknown mode")
}

// Priority orders the nodes that are ready to run when there are more of
// them than free workers.
type Priority int

const (
	// CriticalPath runs first the ready node with the longest chain of work
	// still ahead of it (its own estimated duration plus the longest
	// estimated chain below it; see Config.Estimate).
	CriticalPath Priority = iota
	// Depth runs first the ready node deepest in the plan (highest wave),
	// finishing chains already started before opening new ones.
	Depth
)

// priorities names the priorities, in the order of their values.
var priorities = enum.Names[Priority]{"critical-path", "depth"}

// String returns "critical-path" or "depth".
func (p Priority) String() string { return priorities.String(p, "Priority") }

// Config configures an Orchestrator. Only Executor is required, and
// Manifest unless the executor implements executor.ManifestProvider; every
// other field has a working zero value, documented on the field.
type Config struct {
	// Executor runs dbt. Required.
	Executor executor.Executor
	// Manifest is the parsed project. When nil, the executor must implement
	// executor.ManifestProvider; the manifest is then fetched on the first
	// build and kept.
	Manifest *manifest.Manifest

	// Mode is PerNode (zero value) or PerWave.
	Mode Mode
	// Concurrency is how many nodes run at once in PerNode mode; zero
	// means 4. When the executor implements executor.ConcurrencyLimiter
	// and takes fewer invocations at once (Core and Warm on a DuckDB
	// target: 1), each build runs at most that many and says so in
	// Run.Warnings ("concurrency 4 reduced to 1: one DuckDB file takes one
	// writing process at a time"). PerWave mode runs one invocation at a
	// time and leaves threads to dbt (the executor's Threads setting).
	Concurrency int
	// Priority orders ready nodes; zero value CriticalPath.
	Priority Priority
	// Estimate returns the expected duration of a node for CriticalPath
	// priority (for instance from a previous run's results). Nil counts
	// every node as one unit, so the critical path is the longest chain.
	Estimate func(id string) time.Duration
	// StrictWaves makes PerNode mode start a wave's nodes only after every
	// node of the earlier waves has finished, instead of each node as soon
	// as its own upstreams have.
	StrictWaves bool

	// Retry configures retries of failed nodes; the zero value retries
	// nothing.
	Retry RetryConfig
	// NodeTimeout bounds each attempt of a node (each wave invocation in
	// PerWave mode); the executor reports an overrun as KindTimeout, which
	// the default policy retries. Zero means no timeout.
	NodeTimeout time.Duration

	// Limits are named concurrency limits (for example a shared
	// "warehouse" limit from a Registry) that a node must hold while it
	// runs, on top of Concurrency. They are acquired in slice order; give
	// orchestrators sharing limiters the same order.
	Limits []NodeLimit

	// Resolver turns the selection of a build (BuildOptions.Selection) into
	// node ids. Nil means the native resolver of package selector (dbt's
	// selection language without running dbt) over the build's graph; use
	// a selector.DBTLs (or its Session) for dbt's own answer.
	Resolver Resolver

	// Cache, when set, lets nodes whose inputs are unchanged be reported
	// Cached instead of run. Nil disables caching.
	Cache Cache

	// Vars are passed to every dbt invocation as --vars.
	Vars map[string]any

	// Observer receives the build's events; nil means none. Calls are
	// serialized (never concurrent) and must return quickly.
	Observer Observer
	// Logger receives the orchestrator's own diagnostics (cache and
	// reporter warnings); nil discards them.
	Logger *slog.Logger
	// Reporters run after every build, in order (run_results.json,
	// summaries, ...). Their errors are joined to RunBuild's error.
	Reporters []Reporter

	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// Orchestrator runs builds of one dbt project. It is safe for concurrent
// use: several builds may run at once (they share the executor and the
// limits, not a worker pool).
type Orchestrator struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	m  *manifest.Manifest
	g  *manifest.Graph
	// native is the native selector over nativeG, the graph of the last
	// build that resolved a selection without Config.Resolver.
	native   *selector.Native
	nativeG  *manifest.Graph
	prepared bool
	// schemas are the schema creations in flight, shared by the builds
	// (schemas.go).
	schemas schemaFlights
}

// ErrNoManifest is returned when neither Config.Manifest nor the executor
// provides a manifest.
var ErrNoManifest = errors.New("orchestrator: no manifest (set Config.Manifest or use an executor that implements executor.ManifestProvider)")

// New returns an Orchestrator for cfg. It fails when cfg has no executor,
// has invalid values, or its manifest's graph has a cycle.
func New(cfg Config) (*Orchestrator, error) {
	if cfg.Executor == nil {
		return nil, errors.New("orchestrator: Config.Executor is required")
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("orchestrator: Concurrency %d < 0", cfg.Concurrency)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if err := cfg.Retry.validate(); err != nil {
		return nil, err
	}
	if cfg.Mode != PerNode && cfg.Mode != PerWave {
		return nil, fmt.Errorf("orchestrator: unknown %v", cfg.Mode)
	}
	for i, l := range cfg.Limits {
		if l.Limiter == nil && l.ForNode == nil {
			return nil, fmt.Errorf("orchestrator: Limits[%d] (%q) has no Limiter", i, l.Name)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Orchestrator{cfg: cfg, log: cfg.Logger}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Manifest == nil {
		if _, ok := cfg.Executor.(executor.ManifestProvider); !ok {
			return nil, ErrNoManifest
		}
	} else {
		g, err := manifest.NewGraph(cfg.Manifest)
		if err != nil {
			return nil, fmt.Errorf("orchestrator: %w", err)
		}
		o.m, o.g = cfg.Manifest, g
	}
	return o, nil
}

// graph returns the manifest and its graph, fetching the manifest from the
// executor on first use.
func (o *Orchestrator) graph(ctx context.Context) (*manifest.Manifest, *manifest.Graph, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.g != nil {
		return o.m, o.g, nil
	}
	mp, ok := o.cfg.Executor.(executor.ManifestProvider)
	if !ok {
		return nil, nil, ErrNoManifest
	}
	m, err := mp.Manifest(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("orchestrator: manifest from executor: %w", err)
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		return nil, nil, fmt.Errorf("orchestrator: %w", err)
	}
	o.m, o.g = m, g
	return m, g, nil
}

// Concurrency returns how many nodes a per-node build of o runs at once:
// Config.Concurrency, capped by the executor's MaxConcurrency
// (executor.ConcurrencyLimiter). When it capped it, reason says why (the
// executor's words, e.g. "one DuckDB file takes one writing process at a
// time") and every build adds a Run.Warnings entry saying so; otherwise
// reason is empty. PerWave builds run one invocation at a time and are
// never capped. A program that tells its user before the build (the CLI
// does) asks here instead of applying the rule itself.
func (o *Orchestrator) Concurrency() (n int, reason string) {
	conc := o.cfg.Concurrency
	cl, ok := o.cfg.Executor.(executor.ConcurrencyLimiter)
	if !ok || o.cfg.Mode != PerNode {
		return conc, ""
	}
	n, why := cl.MaxConcurrency()
	if n <= 0 || n >= conc {
		return conc, ""
	}
	if why == "" {
		why = "the executor takes no more at once"
	}
	return n, why
}

// prepare calls the executor's Prepare once, before its first Execute; a
// failed Prepare is tried again on the next build.
func (o *Orchestrator) prepare(ctx context.Context) error {
	p, ok := o.cfg.Executor.(executor.Preparer)
	if !ok {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.prepared {
		return nil
	}
	if err := p.Prepare(ctx); err != nil {
		return fmt.Errorf("orchestrator: prepare executor: %w", err)
	}
	o.prepared = true
	return nil
}
