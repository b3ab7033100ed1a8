package pyworker_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/pyworker"
)

// gone reports whether pid has ended (no process, or a zombie nobody
// reaped yet).
func gone(t *testing.T, pid int) bool {
	_, state := dbttest.ProcParent(t, pid)
	return state == "" || state == "Z"
}

// TestZygoteForksWorkers: a zygote parses the shop project once; workers
// forked from it are its children, in process groups of their own, and
// answer dbt requests from its manifest without a start of their own; a
// killed worker is reported as killed and the zygote forks another; when
// the zygote dies its workers die too and report it; closed in order
// (workers, then zygote) all exit with status 0.
func TestZygoteForksWorkers(t *testing.T) {
	t.Parallel()
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	py, err := dbt.Interpreter(dbttest.DBT(t))
	require.NoError(t, err)
	script, err := pyworker.WriteScript(t.TempDir())
	require.NoError(t, err)
	parse, deps, ls := shopArgs(t, dir)

	launch := func() *pyworker.Zygote {
		z, err := pyworker.LaunchZygote(t.Context(), pyworker.Config{Python: py, Script: script, Dir: dir, Env: env},
			pyworker.Request{DepsArgs: deps, ParseArgs: parse})
		require.NoError(t, err)
		t.Cleanup(z.Kill)
		return z
	}
	z := launch()
	deps = nil
	assert.True(t, z.Ready().Warmed, "the zygote warmed the forks before its ready (its stderr says why not)")

	fork := func(n int) []*pyworker.Worker {
		ws := make([]*pyworker.Worker, n)
		var eg errgroup.Group
		for i := range ws {
			eg.Go(func() (err error) {
				ws[i], err = z.Fork(t.Context())
				return err
			})
		}
		require.NoError(t, eg.Wait())
		for _, w := range ws {
			t.Cleanup(w.Kill)
		}
		return ws
	}
	ask := func(w *pyworker.Worker, id int) {
		m, err := w.Call(t.Context(), pyworker.Request{ID: id, Type: pyworker.Ls, Args: ls, ParseArgs: parse}, time.Second)
		require.NoError(t, err)
		require.True(t, m.Success, "%v\n%s", m.Error, w.Tail(20))
		assert.Equal(t, []string{"seed.shop.customers"}, m.IDs)
	}

	ws := fork(3)
	pids := map[int]bool{z.Pid(): true}
	for i, w := range ws {
		assert.False(t, pids[w.Pid()], "a pid of its own")
		pids[w.Pid()] = true
		assert.Equal(t, w.Pid(), w.Ready().PID)
		ppid, _ := dbttest.ProcParent(t, w.Pid())
		assert.Equal(t, z.Pid(), ppid, "forked by the zygote")
		pgid, err := syscall.Getpgid(w.Pid())
		require.NoError(t, err)
		assert.Equal(t, w.Pid(), pgid, "a process group of its own")
		ask(w, i+1)
	}

	// One worker killed: reported as killed, the others and the zygote
	// live on, and the zygote forks a replacement.
	ws[0].Kill()
	assert.Equal(t, "killed", ws[0].Result().Signal)
	assert.True(t, z.Alive())
	ask(ws[1], 10)
	ws = append(ws, fork(1)...)
	ask(ws[3], 11)

	// A Fork whose ctx ends before the zygote answers returns ctx's
	// error; the worker forked anyway ends at once, and nothing of it
	// stays behind in the Zygote.
	before := dbttest.ProcChildren(t, z.Pid())
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if w, err := z.Fork(cancelled); err == nil {
		w.Kill() // the zygote answered first: nothing was dropped
	} else {
		require.ErrorIs(t, err, context.Canceled)
	}
	// Forks are answered in order: once this one is, the cancelled one
	// has been, and its worker has its input closed. This one works.
	next := fork(1)[0]
	ask(next, 12)
	known := append(before, next.Pid())
	require.Eventually(t, func() bool {
		for _, p := range dbttest.ProcChildren(t, z.Pid()) {
			if !slices.Contains(known, p) {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the cancelled fork's worker ended")
	require.Eventually(t, func() bool { return z.Remembered() == 0 }, 5*time.Second, 20*time.Millisecond)
	require.Never(t, func() bool { return z.Remembered() != 0 }, 300*time.Millisecond, 20*time.Millisecond,
		"the cancelled fork's end is remembered for no one")

	// Closed in order: every worker exits 0, then the zygote.
	for _, w := range ws[1:3] {
		res := w.Close(10 * time.Second)
		assert.Equal(t, 0, res.ExitCode, "%s\n%s", res.Describe("worker"), w.Tail(20))
	}
	// The zygote dies: its last worker dies with it and reports so.
	last := ws[3]
	z.Kill()
	select {
	case <-last.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a forked worker outlived its zygote")
	}
	assert.Equal(t, "killed", last.Result().Signal)
	require.Eventually(t, func() bool { return gone(t, last.Pid()) }, 5*time.Second, 20*time.Millisecond)
	_, err = last.Call(t.Context(), pyworker.Request{ID: 12, Type: pyworker.Ls, Args: ls, ParseArgs: parse}, time.Second)
	require.ErrorIs(t, err, pyworker.ErrExited)

	// A zygote closed after its workers exits 0 too.
	z = launch()
	ws = fork(2)
	ask(ws[0], 1)
	for _, w := range ws {
		assert.Equal(t, 0, w.Close(10*time.Second).ExitCode)
	}
	assert.Equal(t, 0, z.Close(10*time.Second).ExitCode)
	_, err = z.Fork(t.Context())
	require.ErrorIs(t, err, pyworker.ErrExited)
}

// warmProbe parses a project with the worker's patches, counting how
// often dbt links the graph, and forks a child that runs an ls over the
// parsed manifest twice: before warm_forks and after it. It prints the
// warm's result and the links each child made. dbt's output goes to
// stderr; the answer alone to stdout.
const warmProbe = probePrelude + `
deps, parse, ls = (json.loads(a) for a in sys.argv[4:7])
import worker
from dbt.cli.main import dbtRunner
import dbt.compilation
worker.apply_patches(worker.Builds())
links = [0]
link = dbt.compilation.Linker.link_graph
def counted(self, manifest):
    links[0] += 1
    return link(self, manifest)
dbt.compilation.Linker.link_graph = counted
assert dbtRunner().invoke(deps).success
manifest = dbtRunner().invoke(parse).result

def child_links():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        before = links[0]
        ok = dbtRunner(manifest=manifest).invoke(ls).success
        os.write(w, json.dumps([ok, links[0] - before]).encode())
        os._exit(0)
    os.close(w)
    got = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        got += b
    os.waitpid(pid, 0)
    return json.loads(got)

cold = child_links()
warmed = worker.warm_forks(manifest, parse)
warm = child_links()
print(json.dumps({"warmed": warmed, "cold": cold, "warm": warm}), file=out, flush=True)
`

// TestWarmForksSharesGraph: after warm_forks the zygote's manifest has
// its graph linked, so a worker forked from it links none for its first
// request; one forked before it links its own.
func TestWarmForksSharesGraph(t *testing.T) {
	t.Parallel()
	py, script := probeSetup(t)
	dir := dbttest.CopyProject(t, "shop")
	parse, deps, ls := shopArgs(t, dir)
	var got struct {
		Warmed     bool
		Cold, Warm [2]any // [ls succeeded, graphs linked]
	}
	runProbe(t, &got, py, warmProbe, script, dir, jsonArg(t, dbttest.Env(t, dir)), jsonArg(t, deps), jsonArg(t, parse), jsonArg(t, ls))
	require.True(t, got.Warmed)
	assert.Equal(t, [2]any{true, 1.0}, got.Cold, "a fork before the warm links the graph itself")
	assert.Equal(t, [2]any{true, 0.0}, got.Warm, "a fork after the warm finds it linked")
}

// shopArgs returns the parse, deps and ls (of seed.shop.customers) command
// lines for the shop project copied to dir, writing into a temporary
// directory.
func shopArgs(t *testing.T, dir string) (parse, deps, ls []string) {
	t.Helper()
	work := t.TempDir()
	g := dbtargv.Local(dbt.Project{Dir: dir}, filepath.Join(work, "target"), filepath.Join(work, "logs"))
	g.Quiet = true
	parse, err := dbtargv.Parse(g)
	require.NoError(t, err)
	deps, err = dbtargv.Deps(g)
	require.NoError(t, err)
	ls, err = dbtargv.Ls(g, []string{"--select", "fqn:customers"})
	require.NoError(t, err)
	return parse, deps, ls
}

// dryRunProbe seeds the shop project, runs the models a model reads
// (that model left out), runs worker.dry_run over its parsed manifest and
// then the same model for real, as a fork would. It prints the model
// dry_run picked and its name, the statements it sent, how many relations
// of that name the database holds after the dry run and after the real
// run, and the real run's errors.
const dryRunProbe = probePrelude + `
deps, parse = (json.loads(a) for a in sys.argv[4:6])
import duckdb
import worker
from dbt.cli.main import dbtRunner
worker.apply_patches(worker.Builds())
hooks = worker.ProjectHooks()
worker.suppress_project_hooks(hooks)
assert dbtRunner().invoke(deps).success
manifest = dbtRunner().invoke(parse).result
assert dbtRunner(manifest=manifest).invoke(["seed"] + parse[1:]).success
pick = worker.dry_run_pick(manifest)
assert dbtRunner(manifest=manifest).invoke(["run"] + parse[1:] + ["--select", "+" + pick, "--exclude", pick]).success
name = pick.split(",")[0].split(".")[-1]
def relations():
    con = duckdb.connect(os.environ["DBTORCH_DUCKDB_PATH"])
    try:
        return con.execute("select count(*) from information_schema.tables where table_name = ?", [name]).fetchone()[0]
    finally:
        con.close()
sent = worker.dry_run(manifest, parse, hooks)
after_dry = relations()
res = dbtRunner(manifest=manifest).invoke(["run"] + parse[1:] + ["--select", pick, "--indirect-selection", "empty"])
ok = res.success
why = [str(res.exception)] + [str((r.status, r.message)) for r in (res.result or [])]
print(json.dumps({"pick": pick, "name": name, "sent": sent, "dry": after_dry, "ok": ok, "why": why, "real": relations()}), file=out, flush=True)
`

// TestZygoteDryRunSendsNothing: the zygote's dry run (worker.dry_run)
// runs a model's materialization through dbt, every statement going to
// a handle that sends nothing: the model's relation is not created by it,
// and the same model run for real afterwards creates it (the dry run left
// no state behind that a fork would trust).
func TestZygoteDryRunSendsNothing(t *testing.T) {
	t.Parallel()
	py, script := probeSetup(t)
	dir := dbttest.CopyProject(t, "shop")
	parse, deps, _ := shopArgs(t, dir)
	var got struct {
		Pick, Name string
		Sent       []string
		Dry, Real  int
		OK         bool
		Why        []string
	}
	runProbe(t, &got, py, dryRunProbe, script, dir, jsonArg(t, dbttest.Env(t, dir)), jsonArg(t, deps), jsonArg(t, parse))
	require.NotEmpty(t, got.Name, "dry_run picked a model")
	created := slices.ContainsFunc(got.Sent, func(s string) bool {
		s = strings.ToLower(s)
		return strings.Contains(s, "create") && strings.Contains(s, got.Name)
	})
	assert.True(t, created, "the dry run went through the model's materialization: %q", got.Sent)
	assert.Equal(t, 0, got.Dry, "the dry run created nothing in the database")
	assert.True(t, got.OK, "the real run after the dry run succeeded: %q", got.Why)
	assert.Equal(t, 1, got.Real, "the real run created the model's relation")
}
