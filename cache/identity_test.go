package cache_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
)

func exampleGraph(t *testing.T, project string) (*manifest.Manifest, *manifest.Graph) {
	t.Helper()
	m, err := manifest.Parse([]byte(strings.ReplaceAll(exampleManifest, `"project_name": "shop"`, `"project_name": "`+project+`"`)))
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	return m, g
}

// TestWarehouseIdentity: two copies of a project whose targets write to
// different DuckDB files never share a key or a namespace; the identity
// comes from the profile (dbt.Profile.Identity) and holds no secret.
func TestWarehouseIdentity(t *testing.T) {
	shop, err := filepath.Abs(filepath.Join("..", "testdata", "shop"))
	require.NoError(t, err)
	m, g := exampleGraph(t, "shop")
	keyer := func(p dbt.Project) *cache.Keyer {
		t.Helper()
		k, err := cache.NewKeyer(m, g, cache.KeyConfig{Project: p})
		require.NoError(t, err)
		return k
	}
	a := keyer(dbt.Project{Dir: shop, Env: []string{"DBTORCH_DUCKDB_PATH=/data/a/shop.duckdb"}})
	b := keyer(dbt.Project{Dir: shop, Env: []string{"DBTORCH_DUCKDB_PATH=/data/b/shop.duckdb"}})
	same := keyer(dbt.Project{Dir: shop, Env: []string{"DBTORCH_DUCKDB_PATH=/data/a/shop.duckdb"}})
	ka, err := a.Key("model.shop.orders")
	require.NoError(t, err)
	kb, err := b.Key("model.shop.orders")
	require.NoError(t, err)
	ks, err := same.Key("model.shop.orders")
	require.NoError(t, err)
	assert.NotEqual(t, ka, kb, "same file name, different databases")
	assert.Equal(t, ka, ks)
	assert.NotEqual(t, a.Namespace(), b.Namespace())
	assert.Equal(t, "/data/a/shop.duckdb", a.Config().Warehouse["path"])
	assert.Equal(t, "duckdb", a.Config().Warehouse["type"])

	pg := keyer(dbt.Project{Dir: shop, Target: "pg", Env: []string{"DBTORCH_PG_PASSWORD=hunter2", "DBTORCH_PG_HOST=db1"}})
	pg2 := keyer(dbt.Project{Dir: shop, Target: "pg", Env: []string{"DBTORCH_PG_PASSWORD=other", "DBTORCH_PG_HOST=db2"}})
	assert.Equal(t, "db1", pg.Config().Warehouse["host"])
	for _, v := range pg.Config().Warehouse {
		assert.NotContains(t, v, "hunter2", "never a secret")
	}
	assert.NotEqual(t, pg.Namespace(), pg2.Namespace(), "another host")
}

// TestNamespacesAndIntegrity: two projects sharing one store never
// overwrite each other's entries; an entry whose recorded status is not a
// success is a miss, as is one whose key does not match.
func TestNamespacesAndIntegrity(t *testing.T) {
	ctx := t.Context()
	store := cache.NewStore(afero.NewMemMapFs(), "/cache", cache.StoreOptions{})
	open := func(project string) *cache.Session {
		t.Helper()
		m, g := exampleGraph(t, project)
		s, err := cache.New(store, cache.Options{}).Open(m, g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
		require.NoError(t, err)
		return s
	}
	const id = "model.shop.orders"
	p, q := open("p"), open("q")
	require.NotEqual(t, p.Store().Dir(), q.Store().Dir())
	for _, s := range []*cache.Session{p, q} {
		key, err := s.Key(id)
		require.NoError(t, err)
		require.NoError(t, s.Put(ctx, id, key, cache.Result{Status: "success", Message: s.Manifest().Metadata.ProjectName}))
	}
	for _, s := range []*cache.Session{p, q} {
		c := s.Check(ctx, id)
		require.True(t, c.Hit, c.Reason)
		assert.Equal(t, s.Manifest().Metadata.ProjectName, c.Entry.Result.Message, "each project reads its own entry")
	}

	key, err := p.Key(id)
	require.NoError(t, err)
	require.NoError(t, p.Put(ctx, id, key, cache.Result{Status: "error"}))
	c := p.Check(ctx, id)
	assert.False(t, c.Hit)
	assert.True(t, strings.HasPrefix(c.Reason, cache.ReasonNotSuccess), c.Reason)

	e, err := q.Store().Get(ctx, id)
	require.NoError(t, err)
	e.Key = strings.Repeat("0", 64)
	require.NoError(t, q.Store().Put(ctx, e))
	c = q.Check(ctx, id)
	assert.False(t, c.Hit)
	assert.Equal(t, cache.ReasonKeyChanged+": target, adapter, dbt version or warehouse", c.Reason)
}

// TestUnitTestKeys: a unit test's key covers its definition (mocked
// inputs, expected rows) and its model; one reading a fixture file is
// never cached, nor any test with AlwaysRunTests.
func TestUnitTestKeys(t *testing.T) {
	doc := func(expect, fixture string) string {
		return `{"metadata": {"adapter_type": "duckdb", "project_name": "p"}, "nodes": {
	  "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "name": "a", "package_name": "p", "path": "a.sql",
	    "original_file_path": "models/a.sql", "raw_code": "select 1 as x", "checksum": {"name": "sha256", "checksum": "1"},
	    "config": {"materialized": "table"}, "relation_name": "a", "depends_on": {"nodes": []}}},
	  "unit_tests": {"unit_test.p.a.u": {"unique_id": "unit_test.p.a.u", "resource_type": "unit_test", "name": "u", "package_name": "p",
	    "path": "a.yml", "original_file_path": "models/a.yml", "model": "a", "checksum": "abc",
	    "given": [], "expect": {"rows": [{"x": ` + expect + `}], "format": "dict", "fixture": ` + fixture + `},
	    "config": {}, "depends_on": {"nodes": ["model.p.a"]}}}}`
	}
	open := func(d string, opts cache.Options) *cache.Session {
		t.Helper()
		m, err := manifest.Parse([]byte(d))
		require.NoError(t, err)
		g, err := manifest.NewGraph(m)
		require.NoError(t, err)
		s, err := cache.New(cache.NewStore(afero.NewMemMapFs(), "/c", cache.StoreOptions{}), opts).Open(m, g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
		require.NoError(t, err)
		return s
	}
	const id = "unit_test.p.a.u"
	one := open(doc("1", "null"), cache.Options{})
	require.True(t, one.Cacheable(id))
	k1, err := one.Key(id)
	require.NoError(t, err)
	k2, err := open(doc("2", "null"), cache.Options{}).Key(id)
	require.NoError(t, err)
	assert.NotEqual(t, k1, k2, "the expected rows are in the key")
	assert.False(t, open(doc("1", `"expected_rows"`), cache.Options{}).Cacheable(id), "a fixture file")
	assert.False(t, open(doc("1", "null"), cache.Options{AlwaysRunTests: true}).Cacheable(id))
}
