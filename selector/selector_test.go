package selector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/projgen"
	"github.com/dbtorch/dbtorch/manifest"
)

// genManifest returns a small generated manifest (no dbt needed).
func genManifest(tb testing.TB, models int) *manifest.Manifest {
	tb.Helper()
	var buf bytes.Buffer
	require.NoError(tb, projgen.WriteManifest(&buf, projgen.ManifestOptions{Models: models, Seed: 3}))
	m, err := manifest.Parse(buf.Bytes())
	require.NoError(tb, err)
	return m
}

// nativeOf returns the native resolver over m's graph.
func nativeOf(tb testing.TB, m *manifest.Manifest) *Native {
	tb.Helper()
	g, err := manifest.NewGraph(m)
	require.NoError(tb, err)
	return NewNative(g)
}

func TestFnmatchMatchesPython(t *testing.T) {
	// expected values from CPython 3.11's fnmatch.fnmatch
	tests := []struct {
		name, pat string
		want      bool
	}{
		{"stg_orders", "stg_*", true}, {"stg_orders", "stg_[ob]*", true}, {"stg_orders", "stg_[!o]*", false},
		{"a-b", "a[--z]b", true}, {"a]", "a[]]", true}, {"a[", "a[", true}, {"ab", "a[z-b]", false},
		{"a!", "a[!]", false}, {"a.b", "a?b", true}, {"A", "a", false}, {"x", "[!]x]", false}, {"-", "[a-]", true},
		{"b", "[a-c-e]", true}, {"-", "[a-c-e]", true}, {"d", "[a-c-e]", false}, {"x/y", "x*y", true},
		{"^", "[^]", true}, {`\`, `[\]`, true}, {"a\nb", "a*b", true}, {"", "*", true}, {"ab", "a**b", true},
	}
	m := &matcher{}
	for _, tt := range tests {
		assert.Equal(t, tt.want, m.match(tt.name, tt.pat), "fnmatch(%q, %q)", tt.name, tt.pat)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	n := nativeOf(t, genManifest(t, 20))
	ctx := context.Background()

	_, err := n.Resolve(ctx, Options{Select: []string{"tag:a bogus:x"}})
	var se *SyntaxError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, &SyntaxError{Expr: "tag:a bogus:x", Token: "bogus", Pos: 6, Msg: "unknown selector method"}, se)

	_, err = n.Resolve(ctx, Options{Select: []string{"x", "a,@b+"}})
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "@b+", se.Token)
	assert.Equal(t, 2, se.Pos)

	for _, s := range []string{"resource_type:nope", "test_type:xyz", "version:newest", "source:a.b.c.d", "state:changed", "path:"} {
		_, err = n.Resolve(ctx, Options{Select: []string{s}, State: &manifest.Manifest{}})
		var ve *ValueError
		assert.ErrorAs(t, err, &ve, s)
	}
	_, err = n.Resolve(ctx, Options{Select: []string{"state:modified"}})
	assert.ErrorIs(t, err, ErrNoState)
	_, err = n.Resolve(ctx, Options{Select: []string{"result:error"}})
	assert.ErrorIs(t, err, ErrNoRunResults)
	_, err = n.Resolve(ctx, Options{Select: []string{"source_status:fresher"}})
	assert.ErrorIs(t, err, ErrNoSources)
	_, err = n.Resolve(ctx, Options{Selector: "nope"})
	var ue *UnknownSelectorError
	assert.ErrorAs(t, err, &ue)
	_, err = n.Resolve(ctx, Options{Indirect: "sometimes"})
	assert.Error(t, err)
	_, err = n.Resolve(ctx, Options{ResourceTypes: []manifest.ResourceType{"bogus"}})
	assert.Error(t, err)
}

func TestYAMLSelectors(t *testing.T) {
	m := genManifest(t, 20)
	ctx := context.Background()
	want, err := nativeOf(t, m).Resolve(ctx, Options{Select: []string{"resource_type:seed+1"}, Exclude: []string{"resource_type:test"}})
	require.NoError(t, err)
	require.NotEmpty(t, want)
	all, err := nativeOf(t, m).Resolve(ctx, Options{})
	require.NoError(t, err)

	// the manifest's selectors block, as dbt expands selectors.yml
	m.Selectors = map[string]any{
		"seeds_and_children": map[string]any{"name": "seeds_and_children", "default": true, "definition": map[string]any{
			"union": []any{
				map[string]any{"method": "resource_type", "value": "seed", "children": true, "children_depth": "1"},
				map[string]any{"exclude": []any{map[string]any{"method": "resource_type", "value": "test"}}},
			},
		}},
		"alias": map[string]any{"name": "alias", "definition": map[string]any{"method": "selector", "value": "seeds_and_children"}},
		"bad":   map[string]any{"name": "bad", "definition": map[string]any{"union": []any{"tag:x"}, "intersection": []any{"tag:y"}}},
	}
	n := nativeOf(t, m)
	got, err := n.Resolve(ctx, Options{})
	require.NoError(t, err)
	assert.Equal(t, want, got, "default: true applies without --select")
	got, err = n.Resolve(ctx, Options{Selector: "alias"})
	require.NoError(t, err)
	assert.Equal(t, want, got)
	_, err = n.Resolve(ctx, Options{Exclude: []string{"resource_type:nothing_like_this*"}})
	assert.Error(t, err, "resource_type values are checked")
	got, err = n.Resolve(ctx, Options{Select: []string{"*"}})
	require.NoError(t, err)
	assert.NotEqual(t, want, got, "an explicit --select overrides the default selector")
	assert.Subset(t, all, got)
	_, err = n.Resolve(ctx, Options{Selector: "bad"})
	var se *SyntaxError
	assert.ErrorAs(t, err, &se)
	assert.Equal(t, []string{"alias", "bad", "seeds_and_children"}, n.Names())
}

func TestSourceStatusFresher(t *testing.T) {
	m := genManifest(t, 20)
	var srcs []string
	for id := range m.Sources {
		srcs = append(srcs, id)
	}
	require.GreaterOrEqual(t, len(srcs), 2)
	prev, err := ParseSourceFreshness(fmt.Appendf(nil, `{"results": [
		{"unique_id": %q, "max_loaded_at": "2024-01-01T00:00:00+00:00", "status": "pass"},
		{"unique_id": %q, "max_loaded_at": "2024-01-01T00:00:00+00:00", "status": "pass"}]}`, srcs[0], srcs[1]))
	require.NoError(t, err)
	cur, err := ParseSourceFreshness(fmt.Appendf(nil, `{"results": [
		{"unique_id": %q, "max_loaded_at": "2024-01-02T00:00:00+00:00", "status": "pass"},
		{"unique_id": %q, "max_loaded_at": "2024-01-01T00:00:00+00:00", "status": "pass"}]}`, srcs[0], srcs[1]))
	require.NoError(t, err)
	got, err := nativeOf(t, m).Resolve(context.Background(), Options{
		Select: []string{"source_status:fresher"}, Sources: prev, CurrentSources: cur})
	require.NoError(t, err)
	assert.Equal(t, []string{srcs[0]}, got)
}

func TestStatePathIsReadAndCached(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, projgen.WriteManifest(&buf, projgen.ManifestOptions{Models: 20, Seed: 3}))
	m, err := manifest.Parse(buf.Bytes())
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest.json"), buf.Bytes(), 0o644))
	n := nativeOf(t, m)
	for range 2 {
		got, err := n.Resolve(context.Background(), Options{Select: []string{"state:modified"}, StatePath: dir})
		require.NoError(t, err)
		assert.Empty(t, got, "a manifest compared with itself has no modifications")
	}
	old, err := n.Resolve(context.Background(), Options{Select: []string{"state:old"}, StatePath: dir})
	require.NoError(t, err)
	assert.NotEmpty(t, old)
	_, err = n.Resolve(context.Background(), Options{Select: []string{"result:error"}, StatePath: dir})
	assert.True(t, errors.Is(err, ErrNoRunResults))
}

func ExampleNative() {
	var buf bytes.Buffer
	_ = projgen.WriteManifest(&buf, projgen.ManifestOptions{Models: 12, Seed: 1})
	m, _ := manifest.Parse(buf.Bytes())
	g, _ := manifest.NewGraph(m)

	ids, err := NewNative(g).Resolve(context.Background(), Options{
		Select:   []string{"resource_type:seed+1"},
		Exclude:  []string{"resource_type:test"},
		Indirect: Cautious,
	})
	fmt.Println(len(ids) > 0, err)
	_, err = NewNative(g).Resolve(context.Background(), Options{Select: []string{"colour:red"}})
	fmt.Println(err)
	// Output:
	// true <nil>
	// selector: unknown selector method: "colour" at byte 0 of "colour:red"
}

// FuzzParse: the parser and evaluator never panic, whatever the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"stg_orders+", "@a", "2+tag:x,config.materialized:view", "path:models/**/*.sql",
		"a[!b-", "+", "@+x+", "state:modified", "source:a.b.c", "fqn:*.v2", "config.meta.x.y:z", "٣+x", "x\ny"} {
		f.Add(s, "")
	}
	m := genManifest(f, 15)
	n := nativeOf(f, m)
	f.Fuzz(func(t *testing.T, sel, excl string) {
		_, _ = parseCLI([]string{sel}, []string{excl}, Eager)
		_, _ = n.Resolve(context.Background(), Options{Select: []string{sel}, Exclude: []string{excl}, State: m})
		_, _ = translateFnmatch(sel), 0
		(&matcher{}).match(excl, sel)
	})
}

func TestNativeIsSafeForConcurrentUse(t *testing.T) {
	m := genManifest(t, 40)
	n := nativeOf(t, m)
	sels := []Options{{}, {Select: []string{"config.materialized:table+"}}, {Select: []string{"path:models tag:*"}},
		{Select: []string{"state:modified"}, State: m}, {Select: []string{"+fqn:*"}, Indirect: Buildable}}
	want := make([][]string, len(sels))
	for i, o := range sels {
		var err error
		want[i], err = nativeOf(t, m).Resolve(context.Background(), o)
		require.NoError(t, err)
	}
	errs := make(chan error, 8*len(sels))
	for g := range 8 {
		go func() {
			for k := range sels {
				i := (g + k) % len(sels)
				got, err := n.Resolve(context.Background(), sels[i])
				if err == nil && !assert.ObjectsAreEqual(want[i], got) {
					err = fmt.Errorf("selection %d differs under concurrency", i)
				}
				errs <- err
			}
		}()
	}
	for range 8 * len(sels) {
		require.NoError(t, <-errs)
	}
}
