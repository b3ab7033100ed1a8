package executor

import (
	"context"
	"fmt"
	"strings"
)

// SchemaCreator is an optional capability of an Executor: it creates the
// schemas a build writes to, once, before the first node that needs them,
// as `dbt build` does at its start. An orchestrator that finds it runs
// CreateSchemas before the first invocation into a schema and lets every
// invocation into it run concurrently afterwards (dbt then finds the
// schema and creates nothing).
//
// CreateSchemas creates each schema that does not exist ("create schema if
// not exists" through the adapter's create_schema macro) and returns nil
// when all of them exist afterwards. It must be safe for concurrent use,
// also by other processes creating the same schemas: a duplicate-key or
// "already exists" error of a concurrent creator (PostgreSQL's
// pg_namespace_nspname_index) is not a failure. A failure names the
// schemas and carries dbt's message (ClassifyMessage gives its Kind).
// When ctx is done it stops and returns ctx's error.
//
// Core and Warm implement it with one `dbt show --inline` whose Jinja
// calls adapter.create_schema for each schema (Warm on a worker, on a copy
// of its parsed project). The dbt Cloud executor does not: a dbt Cloud job
// step cannot run a statement outside a dbt command, so there each
// invocation creates its schemas as dbt does, and a duplicate-key error of
// two concurrent first invocations into one schema is a node error
// (KindDatabase, retried by the default policy, which then finds the
// schema).
type SchemaCreator interface {
	CreateSchemas(ctx context.Context, schemas []Schema) error
}

var (
	_ SchemaCreator = (*Core)(nil)
	_ SchemaCreator = (*Warm)(nil)
)

// createSchemasSQL is the `dbt show --inline` query that creates schemas:
// its Jinja runs adapter.create_schema for each one when dbt executes the
// query (not when it parses it), then selects one row.
func createSchemasSQL(schemas []Schema) string {
	var b strings.Builder
	b.WriteString("{% if execute %}")
	for _, s := range schemas {
		db := "none"
		if s.Database != "" {
			db = jinjaString(s.Database)
		}
		fmt.Fprintf(&b, "{%% do adapter.create_schema(api.Relation.create(database=%s, schema=%s)) %%}", db, jinjaString(s.Schema))
	}
	b.WriteString("{% endif %}select 1 as created")
	return b.String()
}

// jinjaString quotes s as a Jinja string literal.
func jinjaString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`).Replace(s) + "'"
}

// AlreadyExists reports whether a dbt error text says that a schema (or
// another catalog object) was created concurrently by someone else: a
// duplicate key in PostgreSQL's catalog, or an "already exists" error. A
// "create schema if not exists" that fails this way leaves the schema in
// place.
func AlreadyExists(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "already exists") ||
		strings.Contains(m, "duplicate key") && (strings.Contains(m, "pg_namespace") || strings.Contains(m, "schema"))
}

func schemaNames(schemas []Schema) string {
	names := make([]string, len(schemas))
	for i, s := range schemas {
		names[i] = s.Schema
		if s.Database != "" {
			names[i] = s.Database + "." + s.Schema
		}
	}
	return strings.Join(names, ", ")
}

// creationError wraps a failed creation of schemas, or returns nil when it
// failed only because a concurrent creator was first.
func creationError(schemas []Schema, err error) error {
	if err == nil || AlreadyExists(err.Error()) {
		return nil
	}
	return fmt.Errorf("executor: create schemas %s: %w", schemaNames(schemas), err)
}

// CreateSchemas implements SchemaCreator with one `dbt show --inline`
// subprocess.
func (c *Core) CreateSchemas(ctx context.Context, schemas []Schema) error {
	if len(schemas) == 0 {
		return nil
	}
	_, err := c.show(ctx, "schemas-", createSchemasSQL(schemas), false)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return creationError(schemas, err)
}

// CreateSchemas implements SchemaCreator: an idle worker runs the
// creating query through dbt show on its parsed project.
func (x *Warm) CreateSchemas(ctx context.Context, schemas []Schema) error {
	if len(schemas) == 0 {
		return nil
	}
	_, err := x.show(ctx, createSchemasSQL(schemas), false)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return creationError(schemas, err)
}
