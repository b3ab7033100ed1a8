package orchcache_test

import (
	"context"
	"fmt"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// okExecutor stands in for dbt: every node succeeds, and the relations
// it built exist (executor.RelationLister, which confirms cache hits).
type okExecutor struct {
	runs  int
	built []executor.Relation
}

func (e *okExecutor) ListRelations(context.Context, []executor.Schema) ([]executor.Relation, error) {
	return e.built, nil
}

func (e *okExecutor) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	resp := &executor.Response{}
	for _, n := range req.Nodes {
		e.runs++
		e.built = append(e.built, executor.Relation{Name: n.Name})
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Success, DBTStatus: "success"})
	}
	return resp, nil
}

// An orchestrator with a cache: the second build of an unchanged project
// runs nothing; a build whose vars change what a model reads runs that
// model and what is downstream of it. One Cache serves every build: it
// learns each build's vars from the orchestrator (orchestrator.BuildCache).
func Example() {
	m, err := manifest.Parse([]byte(`{"metadata": {"adapter_type": "duckdb", "project_name": "p"}, "nodes": {
	  "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "name": "a", "package_name": "p", "path": "a.sql",
	    "original_file_path": "models/a.sql", "raw_code": "select '{{ var(\"day\") }}' as day", "checksum": {"name": "sha256", "checksum": "1"},
	    "config": {"materialized": "table"}, "relation_name": "a", "depends_on": {"nodes": []}},
	  "model.p.b": {"unique_id": "model.p.b", "resource_type": "model", "name": "b", "package_name": "p", "path": "b.sql",
	    "original_file_path": "models/b.sql", "raw_code": "select * from {{ ref('a') }}", "checksum": {"name": "sha256", "checksum": "2"},
	    "config": {"materialized": "view"}, "relation_name": "b", "depends_on": {"nodes": ["model.p.a"]}}}}`))
	if err != nil {
		panic(err)
	}
	ex := &okExecutor{}
	store := cache.NewStore(afero.NewMemMapFs(), "/cache", cache.StoreOptions{})
	c := orchcache.New(store, orchcache.Options{Project: dbt.Project{Target: "dev"}})
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: m, Cache: c})
	if err != nil {
		panic(err)
	}
	for _, day := range []string{"mon", "mon", "tue"} {
		run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Vars: map[string]any{"day": day}})
		if err != nil {
			panic(err)
		}
		fmt.Printf("day %s: success %d, cached %d, dbt runs so far %d\n", day, run.Count(orchestrator.Success), run.Count(orchestrator.Cached), ex.runs)
	}
	// Output:
	// day mon: success 2, cached 0, dbt runs so far 2
	// day mon: success 0, cached 2, dbt runs so far 2
	// day tue: success 2, cached 0, dbt runs so far 4
}
