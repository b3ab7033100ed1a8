package artifacts_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dbtorch/dbtorch/artifacts"
)

// TestSummaryWaitTime shows the time nodes waited for limits, apart from
// their run time, and nothing when no node waited.
func TestSummaryWaitTime(t *testing.T) {
	run := fixtureRun(t)
	for i := range run.Results {
		run.Results[i].WaitTime = 0
	}
	assert.NotContains(t, render(t, &artifacts.Summary{}, run), "Waited")
	run.Results[0].WaitTime = 1500 * time.Millisecond
	run.Results[2].WaitTime = 300 * time.Millisecond
	md := render(t, &artifacts.Summary{}, run)
	assert.Contains(t, md, "⏳ Waited 1.80s in total for workers and limits (2 nodes), apart from run time; longest: `"+
		run.Results[0].UniqueID+"` 1.50s, `"+run.Results[2].UniqueID+"` 300ms.\n")
}
