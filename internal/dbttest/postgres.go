package dbttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// PG is a running PostgreSQL server started by StartPostgres. Its superuser
// connects over TCP without a password.
type PG struct {
	Host   string // loopback address the server listens on
	Port   int    // TCP port
	User   string // superuser name
	DBName string // database created for the test

	bin string // directory of the server's binaries
}

// Env returns the variables the test projects' `pg` target reads:
// DBTORCH_PG_HOST, DBTORCH_PG_PORT, DBTORCH_PG_USER and DBTORCH_PG_DBNAME.
// Append them to the result of Env.
func (pg PG) Env() []string {
	return []string{
		"DBTORCH_PG_HOST=" + pg.Host,
		"DBTORCH_PG_PORT=" + strconv.Itoa(pg.Port),
		"DBTORCH_PG_USER=" + pg.User,
		"DBTORCH_PG_DBNAME=" + pg.DBName,
	}
}

// Query runs sql with psql against the test database and returns psql's
// unaligned, tuples-only output (fields separated by "|", one row a line).
func (pg PG) Query(t testing.TB, sql string) string {
	t.Helper()
	out, err := run(t, nil, filepath.Join(pg.bin, "psql"),
		"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User, "-d", pg.DBName,
		"-c", sql)
	if err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	return out
}

// StartPostgres starts a PostgreSQL server from Debian's packages
// (/usr/lib/postgresql/<version>/bin, newest version) for the test: a new
// cluster in a temp dir, listening on a free port of 127.0.0.1 with its unix
// socket in that dir, with durability off for speed, and one database. When
// the test process runs as root the server runs as the "postgres" user (via
// runuser). t.Cleanup stops the server (immediate mode) and deletes its files.
// The test fails, and is never skipped, when the binaries are missing:
// `make postgres-deps` installs them.
func StartPostgres(t testing.TB) PG {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatalf("dbttest: no PostgreSQL server in /usr/lib/postgresql/*/bin (run `make postgres-deps`)")
	}
	slices.SortFunc(bins, func(a, b string) int { return pgVersion(a) - pgVersion(b) })
	bin := filepath.Dir(bins[len(bins)-1])

	base, err := os.MkdirTemp("", "dbtorch-pg-")
	if err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	asUser := serverUser(t, base)
	pg := PG{Host: "127.0.0.1", User: "postgres", DBName: "dbtorch", bin: bin}
	data := filepath.Join(base, "data")
	started := false
	t.Cleanup(func() {
		if started {
			// Best effort: the data dir goes away next either way.
			_, _ = run(t, asUser, filepath.Join(bin, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w")
		}
		_ = os.RemoveAll(base)
	})

	if _, err := run(t, asUser, filepath.Join(bin, "initdb"),
		"-D", data, "-U", pg.User, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	// A free port can be taken between probing and listening: try a few.
	var startErr error
	for range 3 {
		if pg.Port, err = freePort(); err != nil {
			t.Fatalf("dbttest: %v", err)
		}
		opts := fmt.Sprintf("-c listen_addresses=%s -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=64",
			pg.Host, pg.Port, base)
		_, startErr = run(t, asUser, filepath.Join(bin, "pg_ctl"), "start", "-D", data, "-w", "-t", "60",
			"-l", filepath.Join(base, "server.log"), "-o", opts)
		if startErr == nil {
			started = true
			break
		}
	}
	if !started {
		serverLog, _ := os.ReadFile(filepath.Join(base, "server.log"))
		t.Fatalf("dbttest: %v\nserver log:\n%s", startErr, serverLog)
	}
	if _, err := run(t, nil, filepath.Join(bin, "createdb"),
		"-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.User, pg.DBName); err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	return pg
}

// serverUser prepares base for the server and returns the argv prefix that
// runs a command as the server's user: nil when the test is not root, else
// runuser as "postgres", which then owns base.
func serverUser(t testing.TB, base string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := postgresIDs(t)
	if err := os.Chown(base, uid, gid); err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		t.Fatalf("dbttest: running as root needs runuser to start PostgreSQL as postgres: %v", err)
	}
	return []string{runuser, "-u", "postgres", "--"}
}

// run runs name with args (behind the prefix argv, if any) and returns its
// combined output.
func run(t testing.TB, prefix []string, name string, args ...string) (string, error) {
	t.Helper()
	argv := append(append(slices.Clone(prefix), name), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgVersion returns the major version in a path like
// /usr/lib/postgresql/15/bin/initdb, or 0.
func pgVersion(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}
