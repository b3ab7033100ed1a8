package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/proc"
	"github.com/dbtorch/dbtorch/internal/pyworker"
)

// Schema names one schema of the warehouse: Database may be empty (the
// target's).
type Schema struct {
	Database, Schema string
}

// Relation is a table or view that exists in the warehouse.
type Relation struct {
	Database, Schema, Name string
}

// RelationLister is an optional capability of an Executor: it lists the
// relations (tables and views) that exist in the given schemas, with one
// metadata query for all of them. A build cache uses it to confirm that
// what it would serve is still there: a relation dropped outside dbt must
// be rebuilt. Schema, database and relation names are compared without
// regard to case. Core and Warm implement it for adapters whose warehouse
// has an information_schema.tables view (DuckDB, PostgreSQL, Snowflake,
// Redshift, ...).
type RelationLister interface {
	ListRelations(ctx context.Context, schemas []Schema) ([]Relation, error)
}

var (
	_ RelationLister = (*Core)(nil)
	_ RelationLister = (*Warm)(nil)
)

// relationsSQL is the one metadata query of ListRelations.
func relationsSQL(schemas []Schema) string {
	var in []string
	seen := map[string]bool{}
	for _, s := range schemas {
		name := strings.ToLower(s.Schema)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		in = append(in, "'"+strings.ReplaceAll(name, "'", "''")+"'")
	}
	if len(in) == 0 {
		in = append(in, "''")
	}
	return "select table_catalog, table_schema, table_name from information_schema.tables where lower(table_schema) in (" + strings.Join(in, ", ") + ")"
}

// ListRelations implements RelationLister with one `dbt show
// --inline-direct` invocation querying information_schema.tables (the
// query has no Jinja: dbt loads no manifest and compiles nothing), or
// `dbt show --inline` on a dbt that does not take --inline-direct (1.8).
func (c *Core) ListRelations(ctx context.Context, schemas []Schema) ([]Relation, error) {
	sql := relationsSQL(schemas)
	direct := !c.noDirect.Load()
	out, err := c.show(ctx, "relations-", sql, direct)
	if direct && noDirectShow(err) {
		c.noDirect.Store(true)
		out, err = c.show(ctx, "relations-", sql, false)
	}
	if err != nil {
		return nil, fmt.Errorf("executor: list relations: %w", err)
	}
	return parseShowLog(out)
}

// noDirectShow reports whether err is dbt refusing --inline-direct, which
// dbt-core 1.8 does not know.
func noDirectShow(err error) bool {
	if err == nil {
		return false
	}
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "inline-direct") && (strings.Contains(m, "no such option") || strings.Contains(m, "unrecognized"))
}

// showArgs is dbt show's command line for sql: --inline-direct (no
// Jinja, no manifest) when direct, else --inline.
func showArgs(g dbtargv.Global, sql string, direct bool) ([]string, error) {
	if direct {
		return dbtargv.ShowDirect(g, sql)
	}
	return dbtargv.Show(g, sql)
}

// show runs `dbt show --inline sql` (--inline-direct when direct) in a
// directory of its own (named from prefix), on Prepare's partial-parse
// file when there is one, and returns dbt's JSON log lines.
func (c *Core) show(ctx context.Context, prefix, sql string, direct bool) ([]byte, error) {
	dir, err := os.MkdirTemp(c.workDir, prefix)
	if err != nil {
		return nil, err
	}
	if !c.cfg.KeepArtifacts {
		defer os.RemoveAll(dir)
	}
	g := c.cfg.global(c.cfg.Vars, dir)
	c.mu.Lock()
	if c.ppFile != "" { // Prepare's parse, reused as every invocation does
		g.PartialParseFile, g.NoFileDiff = c.ppFile, !c.cfg.CheckFiles
	}
	c.mu.Unlock()
	args, err := showArgs(g, sql, direct)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	res := proc.Run(ctx, proc.Spec{Path: c.cfg.DBT, Args: append(args, "--log-format", "json"), Dir: c.cfg.Dir, Env: c.cfg.Env,
		Grace: c.cfg.KillGrace, Stdout: &out})
	if res.Err != nil {
		return nil, fmt.Errorf("dbt show: %w\n%s", res.Err, res.Tail(tailLines))
	}
	return out.Bytes(), nil
}

// parseShowLog reads the rows of dbt show's ShowNode event from dbt's JSON
// log lines.
func parseShowLog(out []byte) ([]Relation, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"preview"`)) {
			continue
		}
		var ev struct {
			Data struct {
				Preview string `json:"preview"`
			} `json:"data"`
		}
		if json.Unmarshal(line, &ev) != nil || ev.Data.Preview == "" {
			continue
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(ev.Data.Preview), &rows); err != nil {
			return nil, fmt.Errorf("executor: list relations: dbt show's rows: %w", err)
		}
		out := make([]Relation, 0, len(rows))
		for _, r := range rows {
			out = append(out, Relation{Database: str(r["table_catalog"]), Schema: str(r["table_schema"]), Name: str(r["table_name"])})
		}
		return out, nil
	}
	return nil, errors.New("executor: list relations: dbt show printed no rows")
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// ListRelations implements RelationLister: an idle worker runs the
// relations query through `dbt show --inline-direct` (no Jinja, no
// manifest: one connection and the query), or `dbt show --inline` on its
// parsed project on a dbt that does not take --inline-direct (1.8).
func (x *Warm) ListRelations(ctx context.Context, schemas []Schema) ([]Relation, error) {
	sql := relationsSQL(schemas)
	direct := !x.noDirect.Load()
	rows, err := x.show(ctx, sql, direct)
	if direct && noDirectShow(err) {
		x.noDirect.Store(true)
		rows, err = x.show(ctx, sql, false)
	}
	if err != nil {
		return nil, fmt.Errorf("executor: list relations: %w", err)
	}
	out := make([]Relation, 0, len(rows))
	for _, r := range rows {
		if len(r) == 3 {
			out = append(out, Relation{Database: r[0], Schema: r[1], Name: r[2]})
		}
	}
	return out, nil
}

// show runs `dbt show --inline sql` on an idle worker, on a copy of its
// parsed project (--inline-direct when direct: on a connection, without
// the project), and returns the rows.
func (x *Warm) show(ctx context.Context, sql string, direct bool) ([][]string, error) {
	if err := x.Prepare(ctx); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(x.workDir, "show-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	g := x.cfg.global(x.cfg.Vars, dir)
	g.Quiet = true
	args, err := showArgs(g, sql, direct)
	if err != nil {
		return nil, err
	}
	vars, err := x.cfg.Vars.JSON()
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	x.nextID++
	id := x.nextID
	pp := x.ppFile
	x.mu.Unlock()
	parse, err := x.parseArgs(x.cfg.Vars, filepath.Join(x.workDir, fmt.Sprintf("parse-%d", id)), pp)
	if err != nil {
		return nil, err
	}
	w, err := x.takeIdle(ctx)
	if err != nil {
		return nil, err
	}
	m, err := w.pw.Call(ctx, pyworker.Request{ID: id, Type: pyworker.Show, Args: args, ParseArgs: parse, Key: vars}, x.cfg.KillGrace)
	if err != nil {
		x.retire(w)
		return nil, err
	}
	x.release(w)
	if !m.Success {
		msg := "dbt show failed"
		if m.Error != nil {
			msg = *m.Error
		}
		return nil, errors.New(msg)
	}
	return m.Rows, nil
}

// takeIdle waits for a live idle worker (replacing ones that died while
// idle).
func (x *Warm) takeIdle(ctx context.Context) (*worker, error) {
	for {
		var w *worker
		select {
		case w = <-x.idle:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-x.done:
			return nil, ErrClosed
		}
		if w.err != nil {
			x.retire(w)
			return nil, w.err
		}
		select {
		case <-w.pw.Done():
			x.retire(w)
			continue
		default:
		}
		return w, nil
	}
}
