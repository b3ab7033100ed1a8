package cache

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var snap = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// sourcesJSON writes a sources.json v3 with the given results.
func sourcesJSON(results ...string) string {
	return `{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
	"generated_at": "` + snap.Format(time.RFC3339) + `"}, "results": [` + strings.Join(results, ",") + `], "elapsed_time": 1}`
}

func freshResult(id, status string, loaded time.Time, warnHours, errorHours int) string {
	return fmt.Sprintf(`{"unique_id": %q, "status": %q, "max_loaded_at": %q, "snapshotted_at": %q,
	"max_loaded_at_time_ago_in_s": %f, "criteria": {"warn_after": {"count": %d, "period": "hour"},
	"error_after": {"count": %d, "period": "hour"}, "filter": null}, "adapter_response": {}, "timing": [],
	"thread_id": "Thread-1", "execution_time": 0.1}`,
		id, status, loaded.Format("2006-01-02T15:04:05+00:00"), snap.Format("2006-01-02T15:04:05.000000+00:00"),
		snap.Sub(loaded).Seconds(), warnHours, errorHours)
}

func TestParseSources(t *testing.T) {
	doc := sourcesJSON(
		freshResult("source.p.raw.t0", "pass", snap.Add(-2*time.Hour), 6, 12),
		freshResult("source.p.raw.t1", "error", snap.Add(-13*time.Hour), 6, 12),
		`{"unique_id": "source.p.raw.t2", "status": "runtime error", "error": "relation does not exist"}`,
	)
	f, err := ParseSources(strings.NewReader(doc))
	require.NoError(t, err)
	assert.Equal(t, snap, f.GeneratedAt)
	assert.Equal(t, SourceFreshness{UniqueID: "source.p.raw.t0", Status: "pass", MaxLoadedAt: snap.Add(-2 * time.Hour),
		SnapshottedAt: snap, WarnAfter: 6 * time.Hour, ErrorAfter: 12 * time.Hour}, f.Sources["source.p.raw.t0"])
	assert.Equal(t, SourceFreshness{UniqueID: "source.p.raw.t2", Status: "runtime error", SnapshottedAt: snap,
		Error: "relation does not exist"}, f.Sources["source.p.raw.t2"])
	assert.Equal(t, []string{"source.p.raw.t1", "source.p.raw.t2"}, f.StaleSources())

	bad := map[string]string{
		"not json":       `{"metadata":`,
		"a manifest":     `{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}, "results": []}`,
		"no results":     `{"metadata": {}}`,
		"unknown status": sourcesJSON(`{"unique_id": "source.p.raw.t0", "status": "fresh-ish"}`),
		"bad time":       sourcesJSON(`{"unique_id": "source.p.raw.t0", "status": "pass", "max_loaded_at": "yesterday"}`),
		"bad period":     sourcesJSON(`{"unique_id": "s", "status": "pass", "criteria": {"warn_after": {"count": 1, "period": "fortnight"}}}`),
		"no id":          sourcesJSON(`{"status": "pass"}`),
	}
	for name, doc := range bad {
		_, err := ParseSources(strings.NewReader(doc))
		assert.Error(t, err, name)
	}
}

func TestParseTimeLayouts(t *testing.T) {
	want := time.Date(2024, 1, 8, 17, 45, 0, 0, time.UTC)
	for _, s := range []string{"2024-01-08T17:45:00+00:00", "2024-01-08T17:45:00Z", "2024-01-08T17:45:00",
		"2024-01-08 17:45:00", "2024-01-08 17:45:00+00:00", "2024-01-08T19:45:00+02:00", "2024-01-08T17:45:00.000000"} {
		got, err := parseTime(s)
		require.NoError(t, err, s)
		assert.True(t, want.Equal(got), "%s -> %s", s, got)
	}
}

func TestSourceExpiry(t *testing.T) {
	tests := []struct {
		name     string
		s        SourceFreshness
		want     time.Time
		wantSome bool
	}{
		{"before warn", SourceFreshness{Status: "pass", MaxLoadedAt: snap.Add(-2 * time.Hour), SnapshottedAt: snap, WarnAfter: 6 * time.Hour, ErrorAfter: 12 * time.Hour}, snap.Add(4 * time.Hour), true},
		{"warned, before error", SourceFreshness{Status: "warn", MaxLoadedAt: snap.Add(-7 * time.Hour), SnapshottedAt: snap, WarnAfter: 6 * time.Hour, ErrorAfter: 12 * time.Hour}, snap.Add(5 * time.Hour), true},
		{"error only", SourceFreshness{Status: "pass", MaxLoadedAt: snap.Add(-1 * time.Hour), SnapshottedAt: snap, ErrorAfter: 3 * time.Hour}, snap.Add(2 * time.Hour), true},
		{"past both", SourceFreshness{Status: "error", MaxLoadedAt: snap.Add(-13 * time.Hour), SnapshottedAt: snap, WarnAfter: 6 * time.Hour, ErrorAfter: 12 * time.Hour}, snap, true},
		{"runtime error", SourceFreshness{Status: "runtime error", SnapshottedAt: snap}, snap, true},
		{"no thresholds", SourceFreshness{Status: "pass", MaxLoadedAt: snap.Add(-13 * time.Hour), SnapshottedAt: snap}, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := tt.s.Expiry()
		assert.Equal(t, tt.wantSome, ok, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}
}

// TestFreshnessGraph: stale skip set and expiry of every node of a
// synthetic project follow its source ancestors.
func TestFreshnessGraph(t *testing.T) {
	s := newSynth(11, 80)
	_, g, _ := s.build(t)
	f, err := ParseSources(strings.NewReader(sourcesJSON(
		freshResult("source.p.raw.t0", "pass", snap.Add(-2*time.Hour), 6, 12),   // expires snap+4h
		freshResult("source.p.raw.t1", "error", snap.Add(-13*time.Hour), 6, 12), // stale
	)))
	require.NoError(t, err)
	var nStale, nT0 int
	for _, id := range g.IDs() {
		anc := g.Ancestors(id, -1)
		has := func(src string) bool { return slices.Contains(anc, src) || id == src }
		if has("source.p.raw.t1") {
			nStale++
			assert.Equal(t, []string{"source.p.raw.t1"}, f.StaleAncestors(g, id), id)
		} else {
			assert.Empty(t, f.StaleAncestors(g, id), id)
		}
		exp, ok := f.Expiry(g, id)
		switch {
		case has("source.p.raw.t1"):
			assert.True(t, ok)
			assert.Equal(t, snap, exp, id)
		case has("source.p.raw.t0"):
			nT0++
			assert.True(t, ok)
			assert.Equal(t, snap.Add(4*time.Hour), exp, id)
		default:
			assert.False(t, ok, id)
		}
	}
	require.NotZero(t, nStale, "the synthetic project must read the stale source")
	require.NotZero(t, nT0)
	var nilF *Freshness
	assert.Nil(t, nilF.StaleAncestors(g, "model.p.n1"))
}

// TestSessionExpiry: entries expire at the earlier of TTL (default, meta
// override, or function) and freshness; a result already past its
// freshness is not stored.
func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	s := newSynth(11, 80)
	// A meta TTL on one model.
	var metaNode, freshNode, staleNode, plainNode string
	m0, g0, _ := s.build(t)
	f, err := ParseSources(strings.NewReader(sourcesJSON(
		freshResult("source.p.raw.t0", "pass", snap.Add(-2*time.Hour), 6, 12),
		freshResult("source.p.raw.t1", "error", snap.Add(-13*time.Hour), 6, 12),
	)))
	require.NoError(t, err)
	for _, id := range g0.IDs() {
		n := m0.Nodes[id]
		if n == nil || n.Materialized != "table" {
			continue
		}
		_, stale := f.Expiry(g0, id)
		switch {
		case len(f.StaleAncestors(g0, id)) > 0 && staleNode == "":
			staleNode = id
		case stale && len(f.StaleAncestors(g0, id)) == 0 && freshNode == "":
			freshNode = id
		case !stale && plainNode == "":
			plainNode = id
		case !stale && metaNode == "":
			metaNode = id
		}
	}
	require.NotEmpty(t, staleNode)
	require.NotEmpty(t, freshNode)
	require.NotEmpty(t, plainNode)
	require.NotEmpty(t, metaNode)
	s.node(metaNode)["config"].(map[string]any)["meta"] = map[string]any{TTLMetaKey: "30m"}
	m, g, fs := s.build(t)

	clock := snap
	now := func() time.Time { return clock }
	store := NewStore(afero.NewMemMapFs(), "c", StoreOptions{Now: now})
	c := New(store, Options{TTL: 2 * time.Hour, Now: now})
	sess, err := c.Open(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}, Freshness: f})
	require.NoError(t, err)
	put := func(id string) {
		key, err := sess.Key(id)
		require.NoError(t, err)
		require.NoError(t, sess.Put(ctx, id, key, Result{Status: "success"}))
	}
	for _, id := range []string{staleNode, freshNode, plainNode, metaNode} {
		put(id)
	}
	_, err = sess.Store().Get(ctx, staleNode)
	assert.ErrorIs(t, err, errNotExist, "a result built on stale data is not stored")
	e, err := sess.Store().Get(ctx, freshNode)
	require.NoError(t, err)
	assert.Equal(t, snap.Add(4*time.Hour), e.Expires, "the freshness expiry is recorded; the TTL is applied at lookup")
	assert.Equal(t, snap, e.Created)
	reason := func(s *Session, id string, at time.Time) string {
		clock = at
		return s.Check(ctx, id).Reason
	}
	assert.Equal(t, ReasonHit, reason(sess, freshNode, snap.Add(2*time.Hour-time.Second)))
	assert.Equal(t, ReasonExpired, reason(sess, freshNode, snap.Add(2*time.Hour)), "TTL before freshness")
	assert.Equal(t, ReasonExpired, reason(sess, plainNode, snap.Add(2*time.Hour)))
	assert.Equal(t, ReasonHit, reason(sess, metaNode, snap.Add(29*time.Minute)))
	assert.Equal(t, ReasonExpired, reason(sess, metaNode, snap.Add(30*time.Minute)), "meta override")

	// The TTL in force at lookup decides: lowering it expires entries
	// written under a longer one, raising it serves them longer.
	lower, err := New(store, Options{TTL: time.Hour, Now: now}).Open(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}, Freshness: f})
	require.NoError(t, err)
	assert.Equal(t, ReasonHit, reason(lower, plainNode, snap.Add(59*time.Minute)))
	assert.Equal(t, ReasonExpired, reason(lower, plainNode, snap.Add(time.Hour)), "written under a 2h TTL, looked up under 1h")
	higher, err := New(store, Options{TTL: 3 * time.Hour, Now: now}).Open(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}, Freshness: f})
	require.NoError(t, err)
	assert.Equal(t, ReasonHit, reason(higher, plainNode, snap.Add(2*time.Hour+time.Minute)))
	assert.Equal(t, ReasonExpired, reason(higher, freshNode, snap.Add(4*time.Hour)), "freshness still bounds it")
	clock = snap

	// Without a default TTL, freshness bounds the entry.
	c2 := New(store, Options{Now: func() time.Time { return snap }})
	sess2, err := c2.Open(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}, Freshness: f})
	require.NoError(t, err)
	exp, ok := sess2.Expires(freshNode, snap)
	assert.True(t, ok)
	assert.Equal(t, snap.Add(4*time.Hour), exp)
	_, ok = sess2.Expires(plainNode, snap)
	assert.False(t, ok, "no TTL, no source: never expires")

	// A NodeTTL function wins over meta; negative means never cached.
	c3 := New(store, Options{NodeTTL: func(n *manifestNode) (time.Duration, bool) {
		if n.UniqueID == plainNode {
			return -1, true
		}
		return 0, false
	}})
	sess3, err := c3.Open(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}})
	require.NoError(t, err)
	assert.False(t, sess3.Cacheable(plainNode))
	assert.True(t, sess3.Cacheable(metaNode))
	_, ok = sess3.Expires(metaNode, snap)
	assert.False(t, ok, "NodeTTL replaces the meta lookup")
}

func TestMetaTTL(t *testing.T) {
	tests := []struct {
		meta any
		want time.Duration
		ok   bool
		err  bool
	}{
		{nil, 0, false, false},
		{"6h", 6 * time.Hour, true, false},
		{"90", 90 * time.Second, true, false},
		{float64(60), time.Minute, true, false},
		{"0", 0, true, false},
		{"-1s", -time.Second, true, false},
		{"soon", 0, false, true},
		{[]any{1}, 0, false, true},
	}
	for _, tt := range tests {
		cfg := map[string]any{}
		if tt.meta != nil {
			cfg["meta"] = map[string]any{TTLMetaKey: tt.meta}
		}
		n := &manifestNode{Config: manifest.NewConfig(cfg)}
		got, ok, err := MetaTTL(n)
		assert.Equal(t, tt.err, err != nil, "%v", tt.meta)
		assert.Equal(t, tt.ok, ok, "%v", tt.meta)
		assert.Equal(t, tt.want, got, "%v", tt.meta)
	}
}

type manifestNode = manifest.Node

var errNotExist = os.ErrNotExist
