package orchestrator_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// TestSelectionMatchesNothing: every --select or --exclude piece that
// selects nothing is warned about in dbt's words (dbt 1.11 prints exactly
// these for `dbt build --select m0001 nosuch m0002,tag:nope --exclude
// gone`), in Run.Warnings and BuildPlan.Warnings; a build that plans
// nothing also says dbt's "Nothing to do".
func TestSelectionMatchesNothing(t *testing.T) {
	m := manifestOf(dagSpec{models: 4, parents: map[int][]int{}})
	o, err := orchestrator.New(orchestrator.Config{Executor: newFake(nil), Manifest: m})
	require.NoError(t, err)
	sel := selector.Options{Select: []string{"m0001 nosuch", "m0002,tag:nope"}, Exclude: []string{"gone"}}
	want := []string{
		"The selection criterion 'nosuch' does not match any enabled nodes",
		"The selection criterion 'm0002,tag:nope' does not match any enabled nodes",
		"The selection criterion 'gone' does not match any enabled nodes",
	}
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Selection: sel})
	require.NoError(t, err)
	assert.Equal(t, want, run.Warnings)
	assert.Len(t, run.Results, 1)
	plan, err := o.Plan(context.Background(), orchestrator.BuildOptions{Selection: sel})
	require.NoError(t, err)
	assert.Equal(t, want, plan.Warnings)

	run, err = o.RunBuild(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"nosuch"}}})
	require.NoError(t, err)
	assert.Equal(t, []string{"The selection criterion 'nosuch' does not match any enabled nodes", orchestrator.NothingToDo}, run.Warnings)

	run, err = o.RunBuild(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"m0001"}}})
	require.NoError(t, err)
	assert.Empty(t, run.Warnings)
}
