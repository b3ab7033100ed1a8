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
