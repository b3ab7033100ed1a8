package dbttest_test

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// TestStartPostgres starts a server, builds the shop project into it through
// the `pg` target, reads rows back, and checks that cleanup stops the server.
func TestStartPostgres(t *testing.T) {
	t.Parallel()
	var pg dbttest.PG
	t.Run("build", func(t *testing.T) {
		pg = dbttest.StartPostgres(t)
		assert.Equal(t, "127.0.0.1", pg.Host)
		assert.NotZero(t, pg.Port)

		dir := dbttest.CopyProject(t, "shop")
		env := append(dbttest.Env(t, dir), pg.Env()...)
		out, err := dbttest.Run(t, dir, env, "deps")
		require.NoError(t, err, out)
		out, err = dbttest.Run(t, dir, env, "build", "--target", "pg")
		require.NoError(t, err, out)
		assert.Contains(t, out, "PASS=42 WARN=0 ERROR=0 SKIP=0", "all but the DuckDB-only Python model")

		got := pg.Query(t, "select count(*), max(first_name) from shop.customers")
		assert.Equal(t, "5|Grace", strings.TrimSpace(got))
		got = pg.Query(t, "select segment, revenue from shop.customer_revenue where customer_id = 1")
		assert.Equal(t, "enterprise|23.00", strings.TrimSpace(got))
	})
	// The subtest's cleanup has stopped the server.
	conn, err := net.Dial("tcp", net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)))
	if err == nil {
		conn.Close()
	}
	assert.Error(t, err, "server still accepting connections after cleanup")
}
