package pyworker_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/pyworker"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestIndexSelectionAgrees asks a patched and an unpatched worker on the
// bundled shop project (versioned models, a package, unit tests, a
// snapshot, seeds) for the same selections through dbt ls and requires the
// same nodes: every node's one-node selector as the warm executor sends it
// (alone, and several in one --select as per-wave invocations do), with
// and without indirect selection, and the fqn forms dbt's fqn method
// matches in other ways than a whole fqn (a model's bare name, a folder, a
// versioned model by name, by name.version and by name_version, a name
// without its package). index_selection answers the one-node selectors
// from its index; the others go through dbt's own code either way.
func TestIndexSelectionAgrees(t *testing.T) {
	t.Parallel()
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	py, err := dbt.Interpreter(dbttest.DBT(t))
	require.NoError(t, err)
	script, err := pyworker.WriteScript(t.TempDir())
	require.NoError(t, err)
	project := dbt.Project{Dir: dir}
	launch := func(unpatched bool) (*pyworker.Worker, dbtargv.Global, []string) {
		work := t.TempDir()
		g := dbtargv.Local(project, filepath.Join(work, "target"), filepath.Join(work, "logs"))
		g.Quiet = true
		parse, err := dbtargv.Parse(g)
		require.NoError(t, err)
		var deps []string
		if unpatched {
			// The patched worker's copy is parsed second and finds the
			// packages installed.
			deps, err = dbtargv.Deps(g)
			require.NoError(t, err)
		}
		w, err := pyworker.Launch(t.Context(), pyworker.Config{Python: py, Script: script, Dir: dir, Env: env, Unpatched: unpatched},
			pyworker.Request{DepsArgs: deps, ParseArgs: parse})
		require.NoError(t, err)
		t.Cleanup(func() { w.Close(0) })
		return w, g, parse
	}
	unpatched, ug, uparse := launch(true)
	patched, pg, pparse := launch(false)
	assert.Contains(t, patched.Ready().Patches, "index_selection")

	m, err := manifest.Load(afero.NewOsFs(), filepath.Join(pg.TargetPath, "manifest.json"))
	require.NoError(t, err)
	var one [][]string
	var own []*manifest.Node
	m.All(func(n *manifest.Node) bool {
		if n.Executable() {
			sel, err := dbtargv.Selector(n)
			require.NoError(t, err)
			one = append(one, []string{sel})
			own = append(own, n)
		}
		return true
	})
	require.Greater(t, len(one), 30)
	selections := slices.Clone(one)
	// Several one-node selectors in one --select, as per-wave sends them.
	for i := 0; i+4 <= len(one); i += 7 {
		selections = append(selections, []string{one[i][0], one[i+1][0], one[i+2][0], one[i+3][0]})
	}
	for _, s := range []string{
		"fqn:customers", "fqn:shop.staging", "fqn:staging", "fqn:dim_customers", "fqn:dim_customers.v2",
		"fqn:dim_customers_v2", "fqn:dim.customers_v2", "fqn:core.dim_customers_v2", "fqn:shop.marts.core.dim_customers", "fqn:pkg_order_status_counts",
		"fqn:shop_pkg.pkg_order_status_counts", "package:shop_pkg", "resource_type:unit_test", "package:this",
		"fqn:shop.staging,resource_type:model", "fqn:customers,package:shop", "fqn:no_such_node",
		"fqn:dim_customers,resource_type:model,package:shop", "fqn:shop.staging.stg_orders+", "fqn:stg_*",
	} {
		selections = append(selections, []string{s})
	}

	ask := func(w *pyworker.Worker, g dbtargv.Global, parse []string, id int, sel []string, indirect bool) ([]string, error) {
		args := append([]string{"--select"}, sel...)
		if !indirect {
			args = append(args, "--indirect-selection", "empty")
		}
		ls, err := dbtargv.Ls(g, args)
		if err != nil {
			return nil, err
		}
		reply, err := w.Call(t.Context(), pyworker.Request{ID: id, Type: pyworker.Ls, Args: ls, ParseArgs: parse}, 0)
		if err != nil {
			return nil, err
		}
		if !reply.Success {
			return nil, fmt.Errorf("dbt ls %s: %v", strings.Join(sel, " "), *reply.Error)
		}
		return reply.IDs, nil
	}
	answers := func(w *pyworker.Worker, g dbtargv.Global, parse []string) ([][]string, error) {
		var out [][]string
		for i, sel := range selections {
			for _, indirect := range []bool{false, true} {
				ids, err := ask(w, g, parse, 1+2*i+map[bool]int{false: 0, true: 1}[indirect], sel, indirect)
				if err != nil {
					return nil, err
				}
				out = append(out, ids)
			}
		}
		return out, nil
	}
	var want, got [][]string
	var eg errgroup.Group
	eg.Go(func() (err error) { want, err = answers(unpatched, ug, uparse); return err })
	eg.Go(func() (err error) { got, err = answers(patched, pg, pparse); return err })
	require.NoError(t, eg.Wait())
	require.Len(t, got, len(want))
	for i := range want {
		assert.Equal(t, want[i], got[i], "--select %s (indirect selection %v)", strings.Join(selections[i/2], " "), i%2 == 1)
	}
	// The one-node selectors select their node alone (with indirect
	// selection empty), patched as unpatched.
	for i, n := range own {
		assert.Equal(t, []string{n.UniqueID}, got[2*i], "%s", one[i][0])
	}
}
