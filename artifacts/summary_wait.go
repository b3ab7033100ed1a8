package artifacts

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// waitShown is how many nodes the summary names as the longest waiters.
const waitShown = 3

// writeWait writes one paragraph on the time the run's nodes spent
// waiting for a worker or a limit slot (NodeResult.WaitTime), apart from
// their run time: the total and the longest waiters. Nothing when no node
// waited.
func writeWait(b *strings.Builder, run *orchestrator.Run) {
	var total time.Duration
	var waited []*orchestrator.NodeResult
	for i := range run.Results {
		if nr := &run.Results[i]; nr.WaitTime > 0 {
			total += nr.WaitTime
			waited = append(waited, nr)
		}
	}
	if total < time.Millisecond {
		return
	}
	slices.SortStableFunc(waited, func(x, y *orchestrator.NodeResult) int { return cmp.Compare(y.WaitTime, x.WaitTime) })
	fmt.Fprintf(b, "⏳ Waited %s in total for workers and limits (%d nodes), apart from run time; longest:", fmtDuration(total), len(waited))
	for k, nr := range waited[:min(len(waited), waitShown)] {
		if k > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(b, " `%s` %s", nr.UniqueID, fmtDuration(nr.WaitTime))
	}
	b.WriteString(".\n\n")
}
