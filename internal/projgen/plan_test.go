package projgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanLayers(t *testing.T) {
	for _, tc := range []struct {
		models, layers, seeds int
	}{
		{1, 1, 2},
		{2, 2, 2},
		{30, 3, 2},
		{200, 9, 8},
		{10000, 16, 50},
	} {
		p, err := newPlan(shape{models: tc.models, seed: 7})
		require.NoError(t, err)
		assert.Len(t, p.models, tc.models)
		assert.Equal(t, tc.layers, p.layers, "models=%d", tc.models)
		assert.Len(t, p.seeds, tc.seeds, "models=%d", tc.models)

		perLayer := make([]int, p.layers+1)
		ephemerals := 0
		for _, m := range p.models {
			perLayer[m.layer]++
			checkModel(t, p, m)
			if m.ephemeral() {
				ephemerals++
			}
		}
		for l := 1; l <= p.layers; l++ {
			assert.Positive(t, perLayer[l], "layer %d of models=%d is empty", l, tc.models)
		}
		if p.layers >= 3 {
			assert.InDelta(t, float64(tc.models)*ephemeralShare, ephemerals, 1, "models=%d", tc.models)
		}
	}
}

// checkModel checks the invariants of one model of p. It uses plain
// comparisons: testify is too slow for 10,000 models under -race.
func checkModel(t *testing.T, p *plan, m *node) {
	t.Helper()
	if len(m.refs) == 0 || len(m.refs) > maxRefs {
		t.Errorf("%s has %d refs", m.name, len(m.refs))
		return
	}
	if want := max(m.layer-1, 0); m.refs[0].layer != want {
		t.Errorf("%s (layer %d): first ref %s is in layer %d, want %d", m.name, m.layer, m.refs[0].name, m.refs[0].layer, want)
	}
	seen := map[*node]bool{}
	for _, r := range m.refs {
		if r.layer >= m.layer || p.byName[r.name] != r || seen[r] {
			t.Errorf("%s: bad ref %s (layer %d, seen %v)", m.name, r.name, r.layer, seen[r])
		}
		seen[r] = true
		if m.unitTest && r.ephemeral() {
			t.Errorf("%s: unit test input %s is ephemeral", m.name, r.name)
		}
	}
	if m.ephemeral() && (m.layer == 1 || m.layer == p.layers) {
		t.Errorf("%s: ephemeral in layer %d", m.name, m.layer)
	}
	if m.relationTo != nil && (m.relationTo.ephemeral() || !seen[m.relationTo]) {
		t.Errorf("%s: relationships test to %s", m.name, m.relationTo.name)
	}
}

func TestPlanDeterministic(t *testing.T) {
	names := func(seed int64) []string {
		p, err := newPlan(shape{models: 300, seed: seed})
		require.NoError(t, err)
		var out []string
		for _, m := range p.models {
			s := m.name + ":" + m.materialized
			for _, r := range m.refs {
				s += "," + r.name
			}
			out = append(out, s)
		}
		return out
	}
	assert.Equal(t, names(1), names(1))
	assert.NotEqual(t, names(1), names(2))
}

func TestPlanRejectsBadOptions(t *testing.T) {
	for _, s := range []shape{
		{models: 0},
		{models: 5, layers: -1},
		{models: 5, name: "Not-A-Name"},
		{models: 5, name: "1abc"},
	} {
		_, err := newPlan(s)
		assert.Error(t, err, "%+v", s)
	}
}
