package dbttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Bouncer is a PgBouncer started by StartPgBouncer in front of a PG.
type Bouncer struct {
	Host string // loopback address it listens on
	Port int    // TCP port
}

// URL returns a postgres:// URL of the test database through the bouncer,
// with application_name app (empty: none).
func (b Bouncer) URL(pg PG, app string) string {
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", pg.User, b.Host, b.Port, pg.DBName)
	if app != "" {
		u += "&application_name=" + app
	}
	return u
}

// StartPgBouncer starts Debian's PgBouncer (/usr/sbin/pgbouncer) in front
// of pg's test database in transaction pooling mode, with at most
// serverConns server connections shared by every client: a client's
// consecutive transactions may run on different server sessions, as
// behind a production transaction pooler. As StartPostgres, it runs as
// "postgres" when the test runs as root, fails (never skips) when the
// binary is missing (`make postgres-deps` installs it), and t.Cleanup
// stops it.
func StartPgBouncer(t testing.TB, pg PG, serverConns int) Bouncer {
	t.Helper()
	bin := "/usr/sbin/pgbouncer"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("dbttest: no PgBouncer at %s (run `make postgres-deps`)", bin)
	}
	dir, err := os.MkdirTemp("", "dbtorch-pgbouncer-")
	if err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// PgBouncer refuses to run as root: then it runs as postgres (its own
	// process, so that signals and Kill reach it).
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		uid, gid := postgresIDs(t)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("dbttest: %v", err)
		}
	}
	b := Bouncer{Host: "127.0.0.1"}
	var lastErr error
	for range 3 {
		if b.Port, err = freePort(); err != nil {
			t.Fatalf("dbttest: %v", err)
		}
		ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s user=%s

[pgbouncer]
listen_addr = %s
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, pg.DBName, pg.Host, pg.Port, pg.DBName, pg.User, b.Host, b.Port, serverConns,
			filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
		conf := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
			t.Fatalf("dbttest: %v", err)
		}
		cmd := exec.Command(bin, conf)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("dbttest: start pgbouncer: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if lastErr = waitListening(b, exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(os.Interrupt)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			return b
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
	t.Fatalf("dbttest: pgbouncer did not start: %v\nlog:\n%s", lastErr, log)
	return Bouncer{}
}

// waitListening waits until the bouncer accepts connections, or its
// process exits, for at most 10 seconds.
func waitListening(b Bouncer, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("pgbouncer exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(b.Host, strconv.Itoa(b.Port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s:%d after 10s", b.Host, b.Port)
}

// postgresIDs returns the uid and gid of the "postgres" user, which runs
// the servers when the tests run as root.
func postgresIDs(t testing.TB) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("dbttest: running as root and no postgres user to run the server as: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}
