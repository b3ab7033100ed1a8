// Package dbttest is the test kit for running real dbt from Go tests.
//
// It finds the repository and the pinned dbt binary, copies the projects under
// testdata/ to temp dirs, builds the environment dbt needs (a DuckDB file of
// the test's own, no telemetry) and runs dbt without a shell. StartPostgres
// starts a throwaway PostgreSQL server for tests that need several writers at
// once.
//
// Use it only from _test.go files. Every function takes the test's
// testing.TB, marks itself as a helper and fails the test on error; nothing
// here skips a test because dbt is missing: run `make setup` instead.
// Project, the usual set-up of a test that runs real dbt, skips it in
// -short mode.
package dbttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
)

// RepoRoot returns the root of the dbtorch repository: the nearest directory
// at or above the working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("dbttest: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("dbttest: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// DBT returns the path of the dbt executable: $DBTORCH_DBT if set, else
// <repo>/.venv/bin/dbt. The test fails if it does not exist.
func DBT(t testing.TB) string {
	t.Helper()
	path := os.Getenv("DBTORCH_DBT")
	if path == "" {
		path = filepath.Join(RepoRoot(t), ".venv", "bin", "dbt")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("dbttest: dbt not found at %s (run `make setup` in the repository root): %v", path, err)
	}
	return path
}

// DBTVersion returns the version of the dbt-core installed beside the dbt
// executable DBT returns (from its dist-info directory, without starting
// Python), such as "1.8.9". The test fails when it cannot be found.
func DBTVersion(t testing.TB) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(DBT(t))
	if err != nil {
		t.Fatalf("dbttest: dbt: %v", err)
	}
	venv := filepath.Dir(filepath.Dir(real))
	found, _ := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "dbt_core-*.dist-info"))
	if len(found) != 1 {
		t.Fatalf("dbttest: want one dbt_core-*.dist-info under %s, found %v", venv, found)
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(found[0]), "dbt_core-"), ".dist-info")
}

// Sessions reports whether warm workers run build sessions on the dbt-core
// DBT returns: the minor versions internal/pyworker/worker.py's
// build_session patch is proven on (its PATCHES entry), written here again
// as the tests' independent expectation: 1.11.
func Sessions(t testing.TB) bool {
	t.Helper()
	return strings.HasPrefix(DBTVersion(t), "1.11.")
}

// OverlayEnv names the environment variable that lists overlays for the
// projects CopyProject copies: directories separated by
// filepath.ListSeparator, absolute or relative to the repository root. For
// each, in order, the files under <dir>/<name>/ are copied over the copy of
// testdata/<name>, replacing files of the same path. `make compat` sets it
// to run the tests on a dbt-core older than the syntax testdata uses (see
// compat/testdata/README.md).
const OverlayEnv = "DBTORCH_TESTDATA_OVERLAY"

// CopyProject copies the dbt project testdata/<name> into a new temp dir and
// returns the copy's directory (…/<name>). Build output (target/, logs/,
// dbt_packages/, DuckDB files, package-lock.yml) is left behind. The
// overlays named by $DBTORCH_TESTDATA_OVERLAY (OverlayEnv) are then copied
// over it; an overlay without a <name> directory is skipped, one that does
// not exist fails the test.
func CopyProject(t testing.TB, name string) string {
	t.Helper()
	root := RepoRoot(t)
	dst := filepath.Join(t.TempDir(), name)
	if err := copyTree(filepath.Join(root, "testdata", name), dst); err != nil {
		t.Fatalf("dbttest: copy project %s: %v", name, err)
	}
	for _, dir := range filepath.SplitList(os.Getenv(OverlayEnv)) {
		if dir == "" {
			continue
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("dbttest: $%s: %v", OverlayEnv, err)
		}
		src := filepath.Join(dir, name)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := copyTree(src, dst); err != nil {
			t.Fatalf("dbttest: overlay %s on project %s: %v", dir, name, err)
		}
	}
	return dst
}

// skipInCopy reports whether CopyProject leaves the entry out.
func skipInCopy(rel string, d fs.DirEntry) bool {
	name := d.Name()
	if d.IsDir() {
		return name == "target" || name == "logs" || name == "dbt_packages"
	}
	return strings.HasSuffix(name, ".duckdb") || strings.HasSuffix(name, ".duckdb.wal") ||
		rel == "package-lock.yml"
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && skipInCopy(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// Env returns the environment for running dbt on projectDir: os.Environ()
// plus DBTORCH_DUCKDB_PATH pointing at a DuckDB file in a new temp dir,
// DBT_PROFILES_DIR=projectDir, and telemetry and colours off.
// DBTORCH_FLAKY_COUNTER is removed so that the shop project passes by default.
//
// Every call makes a new, empty database: call Env once per test and pass
// the same slice to every Run that must see the same tables.
func Env(t testing.TB, projectDir string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBTORCH_FLAKY_COUNTER=") {
			env = append(env, kv)
		}
	}
	db := filepath.Join(t.TempDir(), filepath.Base(projectDir)+".duckdb")
	return append(env,
		"DBTORCH_DUCKDB_PATH="+db,
		"DBT_PROFILES_DIR="+projectDir,
		"DBT_SEND_ANONYMOUS_USAGE_STATS=false",
		"DO_NOT_TRACK=1",
		"DBT_USE_COLORS=false",
	)
}

// Project is the set-up of a test that runs real dbt on testdata/<name>:
// in -short mode it skips the test ("real dbt: not in -short mode");
// otherwise it copies the project (CopyProject) and describes the copy
// for dbtorch: the pinned dbt (DBT), the copy's directory, and Env's
// environment for it (a DuckDB file of the test's own) followed by env.
func Project(t testing.TB, name string, env ...string) dbt.Project {
	t.Helper()
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	dir := CopyProject(t, name)
	return dbt.Project{DBT: DBT(t), Dir: dir, Env: append(Env(t, dir), env...)}
}

// Setenv makes p's environment the test process's (t.Setenv, so the test
// cannot run in parallel) and points $DBTORCH_DBT at p.DBT: the set-up of
// a test that runs dbtorch's command line in-process.
func Setenv(t testing.TB, p dbt.Project) {
	t.Helper()
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("DBTORCH_DBT", p.DBT)
}

// DuckDBPath returns the DuckDB file an environment from Env points dbt
// at ($DBTORCH_DUCKDB_PATH), "" when it names none.
func DuckDBPath(env []string) string {
	db := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "DBTORCH_DUCKDB_PATH="); ok {
			db = v
		}
	}
	return db
}

// Run runs dbt with args in projectDir under env, without a shell, and
// returns its standard output (where dbt writes its log). A non-zero exit is
// returned as an error that carries the exit status and dbt's standard error;
// Run does not fail the test, so tests can assert on failing builds.
func Run(t testing.TB, projectDir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), DBT(t), args...)
	cmd.Dir = projectDir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("dbttest: dbt %s (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		return stdout.String(), fmt.Errorf("dbt %s: %w\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Parse runs `dbt deps` (when the project has a packages.yml) and `dbt parse`
// in projectDir, failing the test on error, and returns the path of the
// manifest dbt wrote (<projectDir>/target/manifest.json).
func Parse(t testing.TB, projectDir string, env []string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(projectDir, "packages.yml")); err == nil {
		if out, err := Run(t, projectDir, env, "deps"); err != nil {
			t.Fatalf("dbttest: %v\nstdout:\n%s", err, out)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dbttest: %v", err)
	}
	if out, err := Run(t, projectDir, env, "parse"); err != nil {
		t.Fatalf("dbttest: %v\nstdout:\n%s", err, out)
	}
	return filepath.Join(projectDir, "target", "manifest.json")
}

// SharedEnv names the environment variable that points at the team's
// shared directory when it is not beside the repository.
const SharedEnv = "DBTORCH_SHARED"

// SharedDir returns the team's shared directory, which holds reference
// material (real manifests, dbt's schemas): $DBTORCH_SHARED if set, else
// <repo>/../shared, else /work/shared (where this project's machines keep
// it, for a clone made elsewhere). When none exists the test is skipped, or
// fails when the environment says CI=true.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, tried := FindSharedDir(RepoRoot(t))
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dbttest: shared directory missing (tried %s; required when CI=true)", strings.Join(tried, ", "))
		}
		t.Skipf("dbttest: shared directory missing (tried %s)", strings.Join(tried, ", "))
	}
	return dir
}

// FindSharedDir returns the first of $DBTORCH_SHARED, <repoRoot>/../shared
// and /work/shared that is a directory, or "" and the places it tried. It
// never fails a test, for callers such as fuzz seeding that go on without it.
func FindSharedDir(repoRoot string) (dir string, tried []string) {
	if env := os.Getenv(SharedEnv); env != "" {
		tried = append(tried, env)
	}
	tried = append(tried, filepath.Join(filepath.Dir(repoRoot), "shared"), "/work/shared")
	for _, d := range tried {
		if info, err := os.Stat(d); err == nil && info.IsDir() {
			return d, tried
		}
	}
	return "", tried
}

// DuckDBRows returns the rows of each table in the DuckDB file db (opened
// read-only with the venv's duckdb module), sorted, as JSON text, so that
// two builds' tables compare as strings.
func DuckDBRows(t testing.TB, db string, tables ...string) map[string]string {
	t.Helper()
	py := filepath.Join(filepath.Dir(DBT(t)), "python")
	script := `
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
out = {}
for table in json.loads(sys.argv[2]):
    rows = con.execute("select * from " + table + " order by all").fetchall()
    out[table] = json.dumps([[str(v) for v in row] for row in rows])
print(json.dumps(out))
`
	arg, _ := json.Marshal(tables)
	out, err := exec.CommandContext(t.Context(), py, "-c", script, db, string(arg)).Output()
	if err != nil {
		t.Fatalf("dbttest: reading %s: %v", db, err)
	}
	var rows map[string]string
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("dbttest: reading %s: %v", db, err)
	}
	return rows
}
