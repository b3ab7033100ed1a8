package selector

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/manifest"
)

// TestDialectFollowsManifestVersion resolves a bare fqn wildcard on the
// same project as written by several dbt-core versions: from 1.11.16 and
// 1.12.6 on it also matches nested models by name; before, only models
// at the top of the models directory (the make compat differential tests
// check each supported minor against dbt ls itself).
func TestDialectFollowsManifestVersion(t *testing.T) {
	top := []string{"model.p.stg_top"}
	both := []string{"model.p.stg_nested", "model.p.stg_top"}
	for version, want := range map[string][]string{
		"1.8.9": top, "1.9.11": top, "1.10.23": top, "1.11.15": top, "1.11.16": both, "1.12.0": top,
		"1.12.5": top, "1.12.6": both, "1.13.0": both, "2.0.0-preview.203": both, "": both, "weird": both,
	} {
		m, err := manifest.Parse(fmt.Appendf(nil, `{"metadata": {"dbt_version": %q}, "nodes": {
			"model.p.stg_top": {"unique_id": "model.p.stg_top", "resource_type": "model", "name": "stg_top", "package_name": "p", "fqn": ["p", "stg_top"]},
			"model.p.stg_nested": {"unique_id": "model.p.stg_nested", "resource_type": "model", "name": "stg_nested", "package_name": "p", "fqn": ["p", "staging", "stg_nested"]}}}`, version))
		require.NoError(t, err)
		got, err := nativeOf(t, m).Resolve(t.Context(), Options{Select: []string{"stg_*"}})
		require.NoError(t, err)
		assert.Equal(t, want, got, "dbt %q", version)
		got, err = nativeOf(t, m).Resolve(t.Context(), Options{Select: []string{"*.stg_*"}})
		require.NoError(t, err)
		assert.Equal(t, both, got, "dbt %q: a dotted wildcard is the same on every version", version)
	}
}

// TestDialect18 checks the rules of dbt-core 1.8 manifests against those
// of 1.9 on one small project: --indirect-selection empty ignores graph
// operators, the methods over all nodes skip saved queries, --resource-type
// test alone keeps unit tests, and state: is refused (VersionError), as is
// every selection on a manifest older than 1.8.
func TestDialect18(t *testing.T) {
	parse := func(version string) *Native {
		m, err := manifest.Parse(fmt.Appendf(nil, `{"metadata": {"dbt_version": %q, "project_name": "p"}, "nodes": {
			"model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "name": "a", "package_name": "p", "fqn": ["p", "a"], "raw_code": "select 1"},
			"model.p.b": {"unique_id": "model.p.b", "resource_type": "model", "name": "b", "package_name": "p", "fqn": ["p", "b"], "raw_code": "select 1", "depends_on": {"nodes": ["model.p.a"]}},
			"test.p.t": {"unique_id": "test.p.t", "resource_type": "test", "name": "t", "package_name": "p", "fqn": ["p", "t"], "raw_code": "select 1", "depends_on": {"nodes": ["model.p.b"]}}},
			"unit_tests": {"unit_test.p.b.u": {"unique_id": "unit_test.p.b.u", "resource_type": "unit_test", "name": "u", "package_name": "p", "fqn": ["p", "b", "u"], "model": "b", "depends_on": {"nodes": ["model.p.b"]}}},
			"saved_queries": {"saved_query.p.q": {"unique_id": "saved_query.p.q", "resource_type": "saved_query", "name": "q", "package_name": "p", "fqn": ["p", "q"]}}}`, version))
		require.NoError(t, err)
		return nativeOf(t, m)
	}
	resolve := func(n *Native, o Options) []string {
		t.Helper()
		got, err := n.Resolve(t.Context(), o)
		require.NoError(t, err)
		return got
	}
	old, cur := parse("1.8.9"), parse("1.9.11")
	for _, c := range []struct {
		opts      Options
		on18, on9 []string
	}{
		{Options{Select: []string{"a+"}, Indirect: Empty}, []string{"model.p.a"}, []string{"model.p.a", "model.p.b", "test.p.t", "unit_test.p.b.u"}},
		{Options{Select: []string{"resource_type:saved_query"}}, []string{}, []string{"saved_query.p.q"}},
		{Options{Select: []string{"package:p"}, ResourceTypes: []manifest.ResourceType{"saved_query"}}, []string{}, []string{"saved_query.p.q"}},
		{Options{Select: []string{"saved_query:q"}}, []string{"saved_query.p.q"}, []string{"saved_query.p.q"}},
		{Options{ResourceTypes: []manifest.ResourceType{"test"}}, []string{"test.p.t", "unit_test.p.b.u"}, []string{"test.p.t"}},
		{Options{ResourceTypes: []manifest.ResourceType{"test", "unit_test"}}, []string{"test.p.t", "unit_test.p.b.u"}, []string{"test.p.t", "unit_test.p.b.u"}},
	} {
		assert.Equal(t, c.on18, resolve(old, c.opts), "1.8: %+v", c.opts)
		assert.Equal(t, c.on9, resolve(cur, c.opts), "1.9: %+v", c.opts)
	}
	st := parse("1.8.9").d.m
	_, err := old.Resolve(t.Context(), Options{Select: []string{"tag:x state:modified+"}, State: st})
	var ve *VersionError
	require.ErrorAs(t, err, &ve)
	assert.ErrorIs(t, err, ErrUnsupportedVersion)
	assert.Equal(t, "state:modified+", ve.Criterion)
	assert.Equal(t, "1.8.9", ve.DBTVersion)
	assert.Empty(t, resolve(cur, Options{Select: []string{"state:modified"}, State: parse("1.9.11").d.m}))
	_, err = parse("1.7.19").Resolve(t.Context(), Options{})
	assert.ErrorIs(t, err, ErrUnsupportedVersion, "dbt-core 1.7")
}
