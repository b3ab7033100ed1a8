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

// SerialSchemaCreator is an optional capability of a SchemaCreator:
// SerialSchemas reports whether, from now on, no two of the executor's
// invocations create schemas at the same moment, because one process runs
// them one at a time or runs them in one build session that creates each
// node's schemas before the node, one node after another (as one `dbt
// build` does). An orchestrator then does not create a build's schemas
// ahead of its nodes: that call guards only against concurrent creators,
// and each invocation creates its own schemas, as dbt does (a failure is
// the node's, with dbt's message). A creator in another process can still
// meet the same schema's creation at once; dbt then reports a duplicate
// key (KindDatabase), which the default retry policy runs again and which
// then finds the schema.
type SerialSchemaCreator interface {
	SchemaCreator
	SerialSchemas() bool
}

var (
	_ SchemaCreator       = (*Core)(nil)
	_ SerialSchemaCreator = (*Warm)(nil)
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

// SerialSchemas implements SerialSchemaCreator: true once Prepare has
// started a pool of one worker (WarmConfig.Workers 1, or 0 where build
// sessions run), which runs one invocation at a time and, in a build
// session, creates each node's schemas before it runs the node, one node
// after another. Before Prepare, and with several workers, false.
func (x *Warm) SerialSchemas() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.started && x.cfg.Workers == 1
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
