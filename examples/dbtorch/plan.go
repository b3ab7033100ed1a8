package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// planJSON is the CLI contract's plan shape.
type planJSON struct {
	Waves []waveJSON `json:"waves"`
	// InferredEdges and Warnings: the edges dbtorch added to dbt's
	// because a node reads a source naming a relation the project
	// builds (manifest.Plan.InferredEdges); absent when there are none.
	InferredEdges []inferredEdgeJSON `json:"inferred_edges,omitempty"`
	Warnings      []string           `json:"warnings,omitempty"`
	// Cache is the predicted cache decision of every node with a key
	// (with --cache-dir; absent otherwise).
	Cache *planCacheJSON `json:"cache,omitempty"`
}

// planCacheJSON is what a plan with --cache-dir predicts of the cache.
type planCacheJSON struct {
	// PredictedHits counts the nodes predicted to be served.
	PredictedHits int `json:"predicted_hits"`
	// RelationsChecked tells whether relation presence was checked
	// (--check-relations).
	RelationsChecked bool `json:"relations_checked"`
	// Nodes holds, in plan order, each node with a cache key.
	Nodes []planCacheNodeJSON `json:"nodes"`
}

type planCacheNodeJSON struct {
	ID     string `json:"unique_id"`
	Hit    bool   `json:"hit"`
	Reason string `json:"reason"`
	Key    string `json:"key"`
}

type inferredEdgeJSON struct {
	Writer   string `json:"writer"`
	Reader   string `json:"reader"`
	Source   string `json:"source"`
	Relation string `json:"relation"`
}

type waveJSON struct {
	Wave  int      `json:"wave"`
	Nodes []string `json:"nodes"`
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mf := addManifestFlags(fs)
	strategyName := fs.String("test-strategy", "immediate", "immediate, deferred or skip")
	output := fs.String("output", "", "json, text or mermaid (default: text on a terminal, json otherwise)")
	bf := &buildFlags{sel: mf.sel}
	bf.addProjectFlags(fs)
	bf.addCacheFlags(fs)
	fs.BoolVar(&bf.fullRefresh, "full-refresh", false, "predict a full refresh: nothing served from the cache")
	checkRelations := fs.Bool("check-relations", false, "with --cache-dir: confirm predicted hits against the warehouse (one `dbt show` listing the relations of the project's schemas)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	opts, err := mf.options()
	if err != nil {
		return badInput(stderr, "plan", err)
	}
	strategy, err := manifest.ParseTestStrategy(*strategyName)
	if err != nil {
		return badInput(stderr, "plan", err)
	}
	format := *output
	if format == "" {
		format = "json"
		if isTerminal(stdout) {
			format = "text"
		}
	}
	if format != "json" && format != "text" && format != "mermaid" {
		return badInput(stderr, "plan", fmt.Errorf("unknown --output %q (want json, text or mermaid)", format))
	}
	m, g, err := mf.graph()
	if err != nil {
		return badInput(stderr, "plan", err)
	}
	var p *manifest.Plan
	var bp *orchestrator.BuildPlan
	if bf.cacheDir != "" {
		if bf.cacheTTL < 0 {
			return badInput(stderr, "plan", errors.New("--cache-ttl must not be negative"))
		}
		bp, err = planCache(ctx, bf, m, *checkRelations, orchestrator.BuildOptions{Selection: opts, Tests: strategy, FullRefresh: bf.fullRefresh})
		if err != nil {
			return failure(ctx, stderr, "plan", err)
		}
		p = bp.Plan
	} else {
		if *checkRelations {
			return badInput(stderr, "plan", errors.New("--check-relations needs --cache-dir"))
		}
		selected, err := selectNodes(ctx, g, opts)
		if err != nil {
			return badInput(stderr, "plan", err)
		}
		p = g.Plan(selected, strategy)
	}
	switch format {
	case "json":
		err = writePlanJSON(stdout, p, bp, *checkRelations)
	case "text":
		err = writePlanText(stdout, p, bp)
	case "mermaid":
		err = writePlanMermaid(stdout, g, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch plan: %v\n", err)
		return 1
	}
	return 0
}

// planCache predicts the build's cache decisions from the store alone:
// keys, lookups (TTL, integrity, the upstream-served rule), without running
// a node. With checkRelations a Core executor lists the relations of the
// project's schemas (one `dbt show`); otherwise unchanged entries are
// predicted hits whose reason says the relation was not checked.
func planCache(ctx context.Context, f *buildFlags, m *manifest.Manifest, checkRelations bool, opts orchestrator.BuildOptions) (*orchestrator.BuildPlan, error) {
	proj, err := f.project()
	if err == nil {
		err = f.preflight(proj)
	}
	if err != nil {
		return nil, usageError{err}
	}
	var ex executor.Executor = planOnly{}
	if checkRelations {
		c, err := executor.NewCore(executor.CoreConfig{Options: f.executorOptions(proj)})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		ex = c
	}
	store, err := openStore(ctx, f.cacheDir, nil)
	if err != nil {
		return nil, err
	}
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: m,
		Cache: orchcache.New(store, orchcache.Options{Project: proj, TTL: f.cacheTTL, AlwaysRunTests: f.alwaysRunTests,
			PredictUnchecked: !checkRelations})})
	if err != nil {
		return nil, err
	}
	opts.Vars = proj.Vars
	return o.Plan(ctx, opts)
}

// planOnly is the executor of a plan that runs nothing.
type planOnly struct{}

func (planOnly) Execute(context.Context, executor.Request) (*executor.Response, error) {
	return nil, errors.New("dbtorch plan runs nothing")
}

// cacheNodes returns bp's cache predictions in plan order.
func cacheNodes(bp *orchestrator.BuildPlan) []planCacheNodeJSON {
	hits := map[string]bool{}
	for _, id := range bp.Cached {
		hits[id] = true
	}
	var out []planCacheNodeJSON
	for i := range int32(bp.Len()) {
		id := bp.ID(i)
		if key, ok := bp.Keys[id]; ok {
			out = append(out, planCacheNodeJSON{ID: id, Hit: hits[id], Reason: bp.Reasons[id], Key: key})
		}
	}
	return out
}

func writePlanJSON(w io.Writer, p *manifest.Plan, bp *orchestrator.BuildPlan, checked bool) error {
	out := planJSON{Waves: []waveJSON{}}
	for i, wave := range p.Waves() {
		out.Waves = append(out.Waves, waveJSON{Wave: i, Nodes: wave})
	}
	for _, e := range p.InferredEdges() {
		out.InferredEdges = append(out.InferredEdges, inferredEdgeJSON{e.Writer, e.Reader, e.Source, e.Relation})
	}
	out.Warnings = p.Warnings()
	if bp != nil {
		out.Warnings = bp.Warnings
		out.Cache = &planCacheJSON{PredictedHits: len(bp.Cached), RelationsChecked: checked, Nodes: cacheNodes(bp)}
		if out.Cache.Nodes == nil {
			out.Cache.Nodes = []planCacheNodeJSON{}
		}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func writePlanText(w io.Writer, p *manifest.Plan, bp *orchestrator.BuildPlan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d nodes in %d waves (widest %d), tests %s\n", p.Len(), len(p.Waves()), p.Width(), p.Strategy)
	warnings := p.Warnings()
	predicted := map[string]planCacheNodeJSON{}
	if bp != nil {
		warnings = bp.Warnings
		nodes := cacheNodes(bp)
		for _, n := range nodes {
			predicted[n.ID] = n
		}
		fmt.Fprintf(&b, "cache: %d of %d nodes with a key predicted served\n", len(bp.Cached), len(nodes))
	}
	for i, wave := range p.Waves() {
		fmt.Fprintf(&b, "\nwave %d (%d)\n", i, len(wave))
		for _, id := range wave {
			fmt.Fprintf(&b, "  %s", id)
			if ups := upstreamText(p, id); len(ups) > 0 {
				fmt.Fprintf(&b, "  <- %s", strings.Join(ups, ", "))
			}
			if n, ok := predicted[id]; ok && n.Hit {
				fmt.Fprintf(&b, "  [cached: %s]", n.Reason)
			} else if ok {
				fmt.Fprintf(&b, "  [runs: %s]", n.Reason)
			}
			b.WriteString("\n")
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(&b, "\nwarning: %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// upstreamText lists id's upstreams, sorted, marking those that exist
// only because of an inferred edge.
func upstreamText(p *manifest.Plan, id string) []string {
	i, _ := p.Index(id)
	ups := p.UpstreamIDs(id)
	for k, u := range ups {
		if j, _ := p.Index(u); p.IsInferred(j, i) {
			ups[k] = u + " (inferred)"
		}
	}
	return ups
}

// writePlanMermaid draws the waves as Mermaid subgraphs with the plan's
// edges between nodes.
func writePlanMermaid(w io.Writer, g *manifest.Graph, p *manifest.Plan) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	// Node i of the plan is drawn as "n<i>"; plan order is wave order.
	i := int32(0)
	for w, wave := range p.Waves() {
		fmt.Fprintf(&b, "  subgraph wave%d[\"wave %d\"]\n", w, w)
		for range wave {
			n := p.Node(i)
			fmt.Fprintf(&b, "    n%d[\"%s<br/><small>%s</small>\"]\n", i, mermaidText(n.Name), n.ResourceType)
			i++
		}
		b.WriteString("  end\n")
	}
	for i := range int32(p.Len()) {
		for _, u := range p.Upstream(i) {
			if p.IsInferred(u, i) {
				fmt.Fprintf(&b, "  n%d -. inferred .-> n%d\n", u, i)
				continue
			}
			fmt.Fprintf(&b, "  n%d --> n%d\n", u, i)
		}
	}
	for _, w := range p.Warnings() {
		fmt.Fprintf(&b, "  %%%% warning: %s\n", strings.ReplaceAll(w, "\n", " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes text for a quoted Mermaid label.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;").Replace(s)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// selectNodes resolves the selection natively; nil means every node
// (dbt's default selection, tests included).
func selectNodes(ctx context.Context, g *manifest.Graph, opts selector.Options) ([]string, error) {
	if len(opts.Select) == 0 && len(opts.Exclude) == 0 && opts.Selector == "" && len(opts.ResourceTypes) == 0 && len(opts.ExcludeResourceTypes) == 0 {
		return nil, nil
	}
	ids, err := selector.NewNative(g).Resolve(ctx, opts)
	if ids == nil && err == nil {
		ids = []string{} // selected nothing: plan nothing
	}
	return ids, err
}
