package manifest_test

import (
	"path/filepath"

	"encoding/json"
	"fmt"
	"github.com/spf13/afero"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/manifest"
)

// nodeJSON is a minimal manifest node for the inference tests.
type nodeJSON struct {
	ID, DB, Schema, Alias, Ident, Mat string
	Deps                              []string
	Disabled                          bool
	Attached                          string
}

func (n nodeJSON) json() string {
	typ, _, _ := strings.Cut(n.ID, ".")
	name := n.ID[strings.LastIndex(n.ID, ".")+1:]
	obj := map[string]any{"unique_id": n.ID, "resource_type": typ, "name": name, "path": name + ".sql",
		"database": n.DB, "schema": n.Schema, "depends_on": map[string]any{"nodes": n.Deps},
		"config": map[string]any{"enabled": !n.Disabled, "materialized": n.Mat}}
	if n.DB == "" {
		obj["database"] = nil
	}
	if typ == "source" {
		obj["identifier"] = n.Ident
		obj["source_name"] = "src"
	} else {
		obj["alias"] = n.Alias
	}
	if n.Attached != "" {
		obj["attached_node"] = n.Attached
		obj["test_metadata"] = map[string]any{"name": "not_null", "kwargs": map[string]any{}}
	}
	b, _ := json.Marshal(obj)
	return string(b)
}

func inferManifest(t *testing.T, nodes ...nodeJSON) *manifest.Graph {
	t.Helper()
	var ns, ss []string
	for _, n := range nodes {
		entry := fmt.Sprintf("%q: %s", n.ID, n.json())
		if strings.HasPrefix(n.ID, "source.") {
			ss = append(ss, entry)
		} else {
			ns = append(ns, entry)
		}
	}
	m, err := manifest.Parse([]byte(`{"nodes": {` + strings.Join(ns, ",") + `}, "sources": {` + strings.Join(ss, ",") + `}}`))
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	return g
}

func edgePairs(es []manifest.InferredEdge) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Writer+" -> "+e.Reader)
	}
	return out
}

// TestInferSeedReadAsSource: a model reading a source that names a seed's
// relation (other case, quoted, the source without database) waits for
// the seed in every strategy, per node and per wave; the selection edges
// stay dbt's; sources naming other relations get no edge.
func TestInferSeedReadAsSource(t *testing.T) {
	g := inferManifest(t,
		nodeJSON{ID: "seed.p.raw_orders", DB: "dev", Schema: "main", Alias: "raw_orders", Mat: "seed"},
		nodeJSON{ID: "source.p.src.orders", Schema: `"MAIN"`, Ident: `"Raw_Orders"`},
		nodeJSON{ID: "source.p.src.other_db", DB: "prod", Schema: "main", Ident: "raw_orders"},
		nodeJSON{ID: "source.p.src.other_schema", DB: "dev", Schema: "raw", Ident: "raw_orders"},
		nodeJSON{ID: "model.p.stg_orders", DB: "dev", Schema: "main", Alias: "stg_orders", Mat: "view",
			Deps: []string{"source.p.src.orders", "source.p.src.other_db", "source.p.src.other_schema"}},
		nodeJSON{ID: "model.p.orders", DB: "dev", Schema: "main", Alias: "orders", Mat: "table", Deps: []string{"model.p.stg_orders"}},
		nodeJSON{ID: "test.p.not_null_src_orders_id", DB: "dev", Schema: "main", Mat: "test",
			Deps: []string{"source.p.src.orders"}, Attached: "source.p.src.orders"},
		nodeJSON{ID: "test.p.not_null_raw_orders_id", DB: "dev", Schema: "main", Mat: "test",
			Deps: []string{"seed.p.raw_orders"}, Attached: "seed.p.raw_orders"},
	)
	assert.Equal(t, []string{
		"seed.p.raw_orders -> model.p.stg_orders",
		"seed.p.raw_orders -> test.p.not_null_src_orders_id",
	}, edgePairs(g.InferredEdges()))
	assert.Empty(t, g.RejectedEdges())
	e := g.InferredEdges()[0]
	assert.Equal(t, "source.p.src.orders", e.Source)
	assert.Equal(t, "dev.main.raw_orders", e.Relation)
	assert.Contains(t, g.Parents("model.p.stg_orders"), "seed.p.raw_orders")

	// Selection edges are dbt's: the model's parents are its sources.
	stg, _ := g.Index("model.p.stg_orders")
	for _, p := range g.SelectionParents(stg) {
		assert.True(t, strings.HasPrefix(g.IDs()[p], "source."), g.IDs()[p])
	}

	for _, strategy := range []manifest.TestStrategy{manifest.Immediate, manifest.Deferred, manifest.SkipTests} {
		p := g.Plan(nil, strategy)
		assert.Contains(t, p.UpstreamIDs("model.p.stg_orders"), "seed.p.raw_orders", strategy)
		assert.Contains(t, p.Waves()[0], "seed.p.raw_orders", strategy)
		i, _ := p.Index("model.p.stg_orders")
		w, _ := p.Index("seed.p.raw_orders")
		assert.Positive(t, p.Wave(i), strategy)
		assert.True(t, p.IsInferred(w, i), strategy)
		require.NotEmpty(t, p.Warnings(), strategy)
		assert.Contains(t, p.Warnings()[0], "model.p.stg_orders runs after seed.p.raw_orders because it reads source.p.src.orders")
	}
	// Under immediate tests, the seed's tests gate the source's readers
	// too, as they would a ref (and the source's own tests, as in dbt).
	p := g.Plan(nil, manifest.Immediate)
	assert.Equal(t, []string{"seed.p.raw_orders", "test.p.not_null_raw_orders_id", "test.p.not_null_src_orders_id"},
		p.UpstreamIDs("model.p.stg_orders"))
	assert.Equal(t, []string{"seed.p.raw_orders"}, p.UpstreamIDs("test.p.not_null_src_orders_id"))
	i, _ := p.Index("model.p.orders")
	assert.Equal(t, 3, p.Wave(i))
	assert.Equal(t, []string{"seed.p.raw_orders"}, g.Plan(nil, manifest.SkipTests).UpstreamIDs("model.p.stg_orders"))

	// An unselected writer is not built, and nothing waits for it.
	p = g.Plan([]string{"model.p.stg_orders", "model.p.orders"}, manifest.Immediate)
	assert.Equal(t, [][]string{{"model.p.stg_orders"}, {"model.p.orders"}}, p.Waves())
	assert.Empty(t, p.InferredEdges())
	assert.Empty(t, p.Warnings())
	// A selected writer precedes its readers.
	p = g.Plan([]string{"seed.p.raw_orders", "model.p.orders", "model.p.stg_orders"}, manifest.SkipTests)
	assert.Equal(t, [][]string{{"seed.p.raw_orders"}, {"model.p.stg_orders"}, {"model.p.orders"}}, p.Waves())
	assert.Len(t, p.InferredEdges(), 1)
}

// TestInferThroughEphemeral: a reader the plan does not run (an ephemeral
// model) passes the wait on to the planned nodes reading it; a reader that
// already refs the writer (the -- depends_on workaround) gets no edge;
// ephemeral and disabled models write nothing.
func TestInferThroughEphemeral(t *testing.T) {
	g := inferManifest(t,
		nodeJSON{ID: "model.p.writer", DB: "dev", Schema: "main", Alias: "landing", Mat: "table"},
		nodeJSON{ID: "model.p.eph_writer", DB: "dev", Schema: "main", Alias: "eph", Mat: "ephemeral"},
		nodeJSON{ID: "model.p.off_writer", DB: "dev", Schema: "main", Alias: "off", Mat: "table", Disabled: true},
		nodeJSON{ID: "source.p.src.landing", DB: "DEV", Schema: "main", Ident: "LANDING"},
		nodeJSON{ID: "source.p.src.eph", DB: "dev", Schema: "main", Ident: "eph"},
		nodeJSON{ID: "source.p.src.off", DB: "dev", Schema: "main", Ident: "off"},
		nodeJSON{ID: "model.p.eph", DB: "dev", Schema: "main", Alias: "e", Mat: "ephemeral",
			Deps: []string{"source.p.src.landing", "source.p.src.eph", "source.p.src.off"}},
		nodeJSON{ID: "model.p.mart", DB: "dev", Schema: "main", Alias: "mart", Mat: "table", Deps: []string{"model.p.eph"}},
		nodeJSON{ID: "model.p.workaround", DB: "dev", Schema: "main", Alias: "w", Mat: "view",
			Deps: []string{"model.p.writer", "source.p.src.landing"}},
	)
	assert.Equal(t, []string{"model.p.writer -> model.p.eph"}, edgePairs(g.InferredEdges()))
	p := g.Plan(nil, manifest.SkipTests)
	assert.Equal(t, []string{"model.p.writer"}, p.UpstreamIDs("model.p.mart"))
	w, _ := p.Index("model.p.writer")
	mart, _ := p.Index("model.p.mart")
	wk, _ := p.Index("model.p.workaround")
	assert.True(t, p.IsInferred(w, mart))
	assert.False(t, p.IsInferred(w, wk), "dbt's own edge")
	require.Len(t, p.Warnings(), 1)
	assert.Contains(t, p.Warnings()[0], "model.p.mart run after model.p.writer because model.p.eph reads source.p.src.landing")
}

// TestInferNoCycles: a model reading its own relation through a source
// (incremental self-reference) and a writer downstream of the reader get no
// edge; they are reported, and the other readers still wait.
func TestInferNoCycles(t *testing.T) {
	g := inferManifest(t,
		nodeJSON{ID: "source.p.src.events", DB: "dev", Schema: "main", Ident: "events"},
		nodeJSON{ID: "model.p.events", DB: "dev", Schema: "main", Alias: "events", Mat: "incremental",
			Deps: []string{"source.p.src.events", "model.p.a"}},
		nodeJSON{ID: "model.p.counts", DB: "dev", Schema: "main", Alias: "counts", Mat: "table", Deps: []string{"source.p.src.events"}},
		// a reads source.p.src.b_rel, which c writes; c depends on a.
		nodeJSON{ID: "source.p.src.b_rel", DB: "dev", Schema: "main", Ident: "c"},
		nodeJSON{ID: "model.p.a", DB: "dev", Schema: "main", Alias: "a", Mat: "table", Deps: []string{"source.p.src.b_rel"}},
		nodeJSON{ID: "model.p.b", DB: "dev", Schema: "main", Alias: "b", Mat: "table", Deps: []string{"model.p.a"}},
		nodeJSON{ID: "model.p.c", DB: "dev", Schema: "main", Alias: "c", Mat: "table", Deps: []string{"model.p.b"}},
		nodeJSON{ID: "model.p.d", DB: "dev", Schema: "main", Alias: "d", Mat: "table", Deps: []string{"source.p.src.b_rel"}},
	)
	assert.Equal(t, []string{"model.p.events -> model.p.counts", "model.p.c -> model.p.d"}, edgePairs(g.InferredEdges()))
	rej := g.RejectedEdges()
	require.Len(t, rej, 2)
	assert.Equal(t, "model.p.c", rej[0].Writer)
	assert.Equal(t, []string{"model.p.a", "model.p.b", "model.p.c"}, rej[0].Cycle)
	assert.Equal(t, []string{"model.p.events"}, rej[1].Cycle)
	assert.Contains(t, rej[1].String(), "reads its own relation")
	p := g.Plan(nil, manifest.Immediate)
	assert.Equal(t, []string{"model.p.events"}, p.UpstreamIDs("model.p.counts"))
	assert.Equal(t, []string{"model.p.a"}, p.UpstreamIDs("model.p.events"))
	ws := strings.Join(p.Warnings(), "\n")
	assert.Contains(t, ws, "inferred edge rejected: model.p.a reads source.p.src.b_rel, which model.p.c writes")
	assert.Contains(t, ws, "inferred edge rejected: model.p.events reads its own relation")
	assert.Len(t, p.Warnings(), 4)
}

// TestRealWorldInferredEdges: the reference manifests load and plan with
// inferred edges; the counts were computed independently with networkx
// (same matching rule: schema and identifier case-insensitive without
// quotes, databases equal or either empty; an edge is left out when the
// reader already depends on the writer directly, rejected when the
// reader is the writer or one of its ancestors). fivetran_hubspot's
// integration tests load its 42 sources as seeds; one of them has no
// reader.
func TestRealWorldInferredEdges(t *testing.T) {
	dir := sharedManifests(t)
	want := map[string]struct{ edges, sources int }{
		"fivetran_hubspot_v4_dbt1.0.4.json": {41, 41},
	}
	for name := range realWorld {
		t.Run(name, func(t *testing.T) {
			m, err := manifest.Load(afero.NewOsFs(), filepath.Join(dir, name))
			require.NoError(t, err)
			g, err := manifest.NewGraph(m)
			require.NoError(t, err)
			sources := map[string]bool{}
			for _, e := range g.InferredEdges() {
				sources[e.Source] = true
				assert.Equal(t, manifest.Seed, g.Node(e.Writer).ResourceType, e.String())
			}
			assert.Len(t, g.InferredEdges(), want[name].edges)
			assert.Len(t, sources, want[name].sources)
			assert.Empty(t, g.RejectedEdges())
			for _, strategy := range []manifest.TestStrategy{manifest.Immediate, manifest.Deferred, manifest.SkipTests} {
				p := g.Plan(nil, strategy)
				checkPlan(t, g, p)
				for _, e := range g.InferredEdges() {
					w, okw := p.Index(e.Writer)
					r, okr := p.Index(e.Reader)
					if okw && okr {
						assert.Less(t, p.Wave(w), p.Wave(r), "%s: %s", strategy, e)
						assert.True(t, p.IsInferred(w, r), "%s: %s", strategy, e)
					}
				}
				if strategy == manifest.SkipTests {
					// Every edge reaches a planned model here.
					assert.Len(t, p.InferredEdges(), want[name].edges)
					assert.Len(t, p.Warnings(), want[name].edges)
				}
			}
		})
	}
}
