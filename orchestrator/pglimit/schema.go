package pglimit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Advisory lock classes (the first key of the two-key form): one for
// creating the tables, one for serializing the acquirers of a limit. Both
// are transaction-level locks, released at commit.
const (
	lockClassLimit  = 0x64627463 // "dbtc"
	lockClassSchema = 0x64627464
)

// tables holds the statements over the tables of one schema.
type tables struct {
	schema, leases, waiters                         string
	ddl                                             []string
	lock, expire, renewOne, enqueue, grant, dequeue string
	release, renew, holders                         string
	exists                                          string
}

// In every statement $1 is the limit name, $2 the holder, $3 the lease in
// milliseconds and $4 the limit's size.
const interval = "clock_timestamp() + $3::bigint * interval '1 millisecond'"

func tablesIn(schema string) tables {
	t := tables{schema: schema}
	q := pgx.Identifier{schema}.Sanitize()
	t.leases = pgx.Identifier{schema, "limit_leases"}.Sanitize()
	t.waiters = pgx.Identifier{schema, "limit_waiters"}.Sanitize()
	t.ddl = []string{
		"CREATE SCHEMA IF NOT EXISTS " + q,
		`CREATE TABLE IF NOT EXISTS ` + t.leases + ` (
			limit_name  text        NOT NULL,
			holder      text        NOT NULL,
			acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			expires_at  timestamptz NOT NULL,
			PRIMARY KEY (limit_name, holder))`,
		`CREATE TABLE IF NOT EXISTS ` + t.waiters + ` (
			limit_name  text        NOT NULL,
			holder      text        NOT NULL,
			ticket      bigint      GENERATED ALWAYS AS IDENTITY,
			enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
			expires_at  timestamptz NOT NULL,
			PRIMARY KEY (limit_name, holder))`,
		`CREATE INDEX IF NOT EXISTS limit_waiters_ticket ON ` + t.waiters + ` (limit_name, ticket)`,
	}
	t.exists = `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`
	mine := `SELECT 1 FROM ` + t.leases + ` WHERE limit_name = $1 AND holder = $2`
	t.lock = fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, hashtext(%s || '.' || $1::text))`, lockClassLimit, quoteLiteral(schema))
	t.expire = `WITH l AS (DELETE FROM ` + t.leases + ` WHERE limit_name = $1 AND expires_at < clock_timestamp())
		DELETE FROM ` + t.waiters + ` WHERE limit_name = $1 AND expires_at < clock_timestamp()`
	t.renewOne = `UPDATE ` + t.leases + ` SET expires_at = ` + interval + ` WHERE limit_name = $1 AND holder = $2`
	t.enqueue = `INSERT INTO ` + t.waiters + ` (limit_name, holder, expires_at)
		SELECT $1, $2, ` + interval + ` WHERE NOT EXISTS (` + mine + `)
		ON CONFLICT (limit_name, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at`
	t.grant = `INSERT INTO ` + t.leases + ` (limit_name, holder, expires_at)
		SELECT $1, $2, ` + interval + `
		WHERE NOT EXISTS (` + mine + `)
		AND (SELECT count(*) FROM ` + t.leases + ` WHERE limit_name = $1)
		  + (SELECT count(*) FROM ` + t.waiters + ` w WHERE w.limit_name = $1
		     AND w.ticket < (SELECT ticket FROM ` + t.waiters + ` WHERE limit_name = $1 AND holder = $2))
		  < $4::bigint`
	t.dequeue = `WITH d AS (DELETE FROM ` + t.waiters + ` WHERE limit_name = $1 AND holder = $2 AND EXISTS (` + mine + `))
		SELECT EXISTS (` + mine + `)`
	t.release = `WITH l AS (DELETE FROM ` + t.leases + ` WHERE limit_name = $1 AND holder = $2)
		DELETE FROM ` + t.waiters + ` WHERE limit_name = $1 AND holder = $2`
	t.renew = `UPDATE ` + t.leases + ` l SET expires_at = ` + interval + `
		FROM unnest($1::text[], $2::text[]) AS h(limit_name, holder)
		WHERE l.limit_name = h.limit_name AND l.holder = h.holder
		RETURNING l.limit_name, l.holder`
	t.holders = `SELECT holder, acquired_at, expires_at FROM ` + t.leases + `
		WHERE limit_name = $1 AND expires_at >= clock_timestamp() ORDER BY acquired_at, holder`
	return t
}

// create creates the schema and tables unless they exist. Creators are
// serialized by a transaction-level advisory lock; a duplicate-object
// error from a creator that does not take it (CREATE ... IF NOT EXISTS is
// not atomic in PostgreSQL) means another creator won, and the creation
// is checked again.
func (t tables) create(ctx context.Context, pool *pgxpool.Pool) error {
	var err error
	for range 3 {
		var ok bool
		if err = pool.QueryRow(ctx, t.exists, t.leases, t.waiters).Scan(&ok); err != nil {
			return fmt.Errorf("pglimit: check tables in schema %q: %w", t.schema, err)
		}
		if ok {
			return nil
		}
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))`, lockClassSchema, t.schema); err != nil {
				return err
			}
			for _, stmt := range t.ddl {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil || !duplicate(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("pglimit: create tables in schema %q: %w", t.schema, err)
	}
	return nil
}

// duplicate reports whether err says an object being created exists.
func duplicate(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "23505", // unique_violation (on the catalogs)
		"42P06", // duplicate_schema
		"42P07", // duplicate_table
		"42710": // duplicate_object
		return true
	}
	return false
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
