package manifest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// sharedManifests returns the folder of real-world manifests beside the
// repository. It fails when CI=true and the folder is missing.
func sharedManifests(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(dbttest.SharedDir(t), "reference", "manifests")
	_, err := os.Stat(dir)
	require.NoError(t, err, "shared reference manifests")
	return dir
}

// realWorld holds facts about each reference manifest, counted with
// Python's json module (see shared/reference/manifests/PROVENANCE.md).
var realWorld = map[string]struct {
	version   int
	byType    map[manifest.ResourceType]int
	sources   int
	unitTests int
	ephemeral int
	// executable: enabled, non-external models (not ephemeral), seeds,
	// snapshots and tests in "nodes".
	executable int
	// builds: the executable models, seeds and snapshots.
	builds int
}{
	"artifacts_parser_jaffle_v12_dbt1.10.13.json": {12, map[manifest.ResourceType]int{"model": 13, "test": 27}, 6, 3, 0, 40, 13},
	"artifacts_parser_jaffle_v5_dbt1.1.0.json":    {5, map[manifest.ResourceType]int{"model": 25, "operation": 1, "seed": 3, "test": 20}, 6, 0, 4, 44, 24},
	"bouncer_fusion_v12_dbt2.0.0b2.json":          {12, map[manifest.ResourceType]int{"model": 38, "operation": 1, "seed": 3, "snapshot": 2, "test": 65}, 13, 4, 3, 103, 40},
	"bouncer_v12_dbt1.12.2.json":                  {12, map[manifest.ResourceType]int{"model": 39, "operation": 1, "seed": 3, "snapshot": 2, "test": 65}, 13, 4, 3, 106, 41},
	"bouncer_v9_dbt1.5.0.json":                    {9, map[manifest.ResourceType]int{"model": 25, "seed": 3, "test": 55}, 9, 0, 0, 83, 28},
	"cosmos_dbtloom_downstream_v12_dbt1.9.0.json": {12, map[manifest.ResourceType]int{"model": 14, "test": 4}, 0, 0, 0, 8, 4},
	"cosmos_model_versions_v10_dbt1.6.1.json":     {10, map[manifest.ResourceType]int{"model": 7, "seed": 3, "test": 24}, 0, 0, 0, 34, 10},
	"fivetran_hubspot_v4_dbt1.0.4.json":           {4, map[manifest.ResourceType]int{"model": 120, "seed": 45, "test": 114}, 52, 0, 4, 275, 161},
	"flipside_axelar_v7_dbt1.3.2.json":            {7, map[manifest.ResourceType]int{"model": 40, "operation": 2, "seed": 1, "test": 464}, 11, 0, 0, 505, 41},
	"piperider_jaffle_v8_dbt1.4.2.json":           {8, map[manifest.ResourceType]int{"model": 5, "seed": 3, "test": 20}, 0, 0, 0, 28, 8},
	"tuva_v11_dbt1.7.8.json":                      {11, map[manifest.ResourceType]int{"model": 297, "seed": 77, "test": 57}, 0, 0, 42, 389, 332},
	"tuva_v6_dbt1.2.1.json":                       {6, map[manifest.ResourceType]int{"model": 53, "seed": 37, "snapshot": 4, "test": 65}, 3, 0, 0, 159, 94},
}

func TestRealWorldManifests(t *testing.T) {
	dir := sharedManifests(t)
	for name, want := range realWorld {
		t.Run(name, func(t *testing.T) {
			m, err := manifest.Load(afero.NewOsFs(), filepath.Join(dir, name))
			require.NoError(t, err)
			assert.Equal(t, want.version, m.Metadata.Version)

			byType := map[manifest.ResourceType]int{}
			ephemeral, executable := 0, 0
			for _, n := range m.Nodes {
				byType[n.ResourceType]++
				if n.IsEphemeral() {
					ephemeral++
				}
				if n.Executable() {
					executable++
				}
			}
			assert.Equal(t, want.byType, byType)
			assert.Len(t, m.Sources, want.sources)
			assert.Len(t, m.UnitTests, want.unitTests)
			assert.Equal(t, want.ephemeral, ephemeral)
			assert.Equal(t, want.executable, executable)
			for _, u := range m.UnitTests {
				assert.NotEmpty(t, u.TestedNode, "unit test %s names no model", u.UniqueID)
			}

			g, err := manifest.NewGraph(m)
			require.NoError(t, err)
			for _, strategy := range []manifest.TestStrategy{manifest.Immediate, manifest.Deferred, manifest.SkipTests} {
				p := g.Plan(nil, strategy)
				checkPlan(t, g, p)
				// Exposures and saved queries are planned as the no-op
				// nodes dbt build reports; functions are built.
				others := 0
				m.All(func(n *manifest.Node) bool {
					if n.NoOp() || (n.ResourceType == manifest.Function && n.Executable()) {
						others++
					}
					return true
				})
				wantNodes := want.executable + want.unitTests + others
				if strategy == manifest.SkipTests {
					wantNodes = want.builds + others
				}
				assert.Len(t, p.Nodes(), wantNodes, "strategy %s", strategy)
			}
		})
	}
}

// checkPlan asserts the invariants every plan holds: only executable and
// no-op nodes,
// each once; every node's wave is greater than each upstream's; wave 0 has
// no upstream; and every upstream edge is implied by the graph.
func checkPlan(t *testing.T, g *manifest.Graph, p *manifest.Plan) {
	t.Helper()
	seen := map[string]bool{}
	for w, wave := range p.Waves() {
		require.NotEmpty(t, wave, "wave %d is empty", w)
		for _, id := range wave {
			n := g.Node(id)
			require.NotNil(t, n, id)
			assert.True(t, n.Executable() || n.NoOp(), "%s in a wave is neither executable nor a no-op", id)
			assert.False(t, n.IsEphemeral(), "ephemeral %s in a wave", id)
			assert.False(t, seen[id], "%s planned twice", id)
			seen[id] = true
			i, ok := p.Index(id)
			require.True(t, ok, id)
			assert.Equal(t, id, p.ID(i))
			assert.Equal(t, w, p.Wave(i))
			if w == 0 {
				assert.Empty(t, p.Upstream(i), "%s in wave 0 has upstreams", id)
			}
			maxUp := -1
			for _, u := range p.Upstream(i) {
				assert.Less(t, p.Wave(u), w, "%s (wave %d) is not after its upstream %s (wave %d)", id, w, p.ID(u), p.Wave(u))
				assert.Contains(t, p.Downstream(u), i, "%s is not downstream of its upstream %s", id, p.ID(u))
				maxUp = max(maxUp, p.Wave(u))
			}
			if p.Strategy != manifest.Deferred || !n.IsTest() {
				assert.Equal(t, maxUp+1, w, "%s: wave is not its longest upstream chain", id)
			}
		}
	}
	assert.Len(t, p.Nodes(), len(seen))
}
