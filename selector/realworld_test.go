package selector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestRealWorldManifests resolves selections on real manifests of many dbt
// versions (v4..v12, dbt Fusion, dbt-loom) and checks invariants that hold
// for any project (manifests of dbt-core before 1.8 must be refused): a manifest compared with itself is unmodified, the
// default selection is dbt's default union, graph operators only add.
func TestRealWorldManifests(t *testing.T) {
	dir := filepath.Join(dbttest.SharedDir(t), "reference", "manifests")
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	ctx := context.Background()
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			m, err := manifest.Parse(data)
			require.NoError(t, err)
			n := nativeOf(t, m)
			if v, ok := parseVersion(m.Metadata.DBTVersion); ok && !v.atLeast(1, 8, 0) {
				// never compared with dbt: refused rather than guessed
				_, err := n.Resolve(ctx, Options{Select: []string{"fqn:*"}})
				var ve *VersionError
				require.ErrorAs(t, err, &ve)
				require.ErrorIs(t, err, ErrUnsupportedVersion)
				assert.Equal(t, m.Metadata.DBTVersion, ve.DBTVersion)
				return
			}
			resolve := func(o Options) []string {
				t.Helper()
				o.ResourceTypes = []manifest.ResourceType{"all"}
				ids, err := n.Resolve(ctx, o)
				require.NoError(t, err, "%+v", o)
				return ids
			}
			union := resolve(Options{Select: []string{"fqn:* source:* exposure:* metric:* semantic_model:*"}})
			if (yamlSelectors{raw: m.Selectors}).defaultName() == "" {
				assert.Equal(t, union, resolve(Options{}), "dbt's default selection")
			}
			assert.Empty(t, resolve(Options{Select: []string{"state:modified"}, State: m}))
			assert.Empty(t, resolve(Options{Select: []string{"state:new"}, State: m}))
			unmod := resolve(Options{Select: []string{"state:unmodified"}, State: m, Indirect: Empty})
			everything := resolve(Options{Select: []string{"fqn:* source:*"}, Indirect: Empty})
			assert.Equal(t, len(everything), len(unmod), "every node is unmodified against itself")
			for _, s := range []string{"tag:*", "path:models", "config.materialized:table", "resource_type:model", "test_type:generic", "version:latest", "package:this"} {
				base := resolve(Options{Select: []string{s}, Indirect: Empty})
				plus := resolve(Options{Select: []string{"+" + s + "+"}, Indirect: Empty})
				at := resolve(Options{Select: []string{"@" + s}, Indirect: Empty})
				assert.Subset(t, plus, base, s)
				assert.Subset(t, at, plus, s)
			}
		})
	}
}
