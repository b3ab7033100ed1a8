package artifacts

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// costRowsShown is how many nodes the summary's cost table lists.
const costRowsShown = 20

// writeCost writes the summary's Cost section: the totals of what the
// warehouse reported for the nodes that ran (adapter_response), what the
// cache saved (the figures its entries recorded), and the nodes that cost
// most. Nothing when no node reported a figure and none was served from
// the cache.
func writeCost(b *strings.Builder, run *orchestrator.Run) {
	tot := run.Totals()
	if tot.Ran.IsZero() && tot.SavedByCache.Nodes == 0 {
		return
	}
	b.WriteString("## Cost\n\n")
	if tot.Ran.Reporting > 0 {
		fmt.Fprintf(b, "💰 The warehouse reported, for %d of the %s that ran: %s.\n\n",
			tot.Ran.Reporting, plural(tot.Ran.Nodes, "node"), costFigures(&tot.Ran, ""))
	} else {
		fmt.Fprintf(b, "💰 The warehouse reported no figures (adapter\\_response) for the %s that ran.\n\n", plural(tot.Ran.Nodes, "node"))
	}
	if s := &tot.SavedByCache; s.Nodes > 0 {
		fmt.Fprintf(b, "♻️ Saved by the cache: %s not run, %s of dbt execution time", plural(s.Nodes, "node"), fmtDuration(seconds(s.ExecutionSeconds)))
		if !s.IsZero() {
			fmt.Fprintf(b, ", %s", costFigures(s, ""))
		}
		b.WriteString(" (as recorded when their cache entries were stored).\n\n")
	}

	type row struct {
		nr    *orchestrator.NodeResult
		c     cost.Cost
		saved bool
	}
	var rows []row
	for i := range run.Results {
		nr := &run.Results[i]
		if c := nr.Cost(); !c.IsZero() {
			rows = append(rows, row{nr, c, false})
		} else if nr.Saved != nil {
			if c := nr.SavedCost(); !c.IsZero() {
				rows = append(rows, row{nr, c, true})
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	val := func(p *int64) int64 {
		if p == nil {
			return -1
		}
		return *p
	}
	slices.SortStableFunc(rows, func(x, y row) int {
		return cmp.Or(cmp.Compare(val(y.c.BytesBilled), val(x.c.BytesBilled)),
			cmp.Compare(val(y.c.BytesProcessed), val(x.c.BytesProcessed)),
			cmp.Compare(val(y.c.SlotMS), val(x.c.SlotMS)),
			cmp.Compare(val(y.c.RowsAffected), val(x.c.RowsAffected)))
	})
	b.WriteString("| node | bytes processed | bytes billed | slot time | rows | query id |\n|---|---:|---:|---:|---:|---|\n")
	for k, r := range rows {
		if k == costRowsShown {
			fmt.Fprintf(b, "| _… and %d more_ | | | | | |\n", len(rows)-costRowsShown)
			break
		}
		id := mdCode(r.nr.UniqueID)
		if r.saved {
			id += " ♻️ saved"
		}
		slot := ""
		if r.c.SlotMS != nil {
			slot = fmtDuration(time.Duration(*r.c.SlotMS) * time.Millisecond)
		}
		q := ""
		if len(r.c.QueryIDs) > 0 {
			q = mdCode(r.c.QueryIDs[0])
			if len(r.c.QueryIDs) > 1 {
				q += fmt.Sprintf(" +%d", len(r.c.QueryIDs)-1)
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", id, fmtBytes(r.c.BytesProcessed), fmtBytes(r.c.BytesBilled), slot, fmtCount(r.c.RowsAffected), q)
	}
	b.WriteString("\n")
}

// costFigures lists the figures of t that were reported, or none.
func costFigures(t *cost.Totals, none string) string {
	var parts []string
	if t.BytesProcessed != nil {
		parts = append(parts, "**"+fmtBytes(t.BytesProcessed)+"** processed")
	}
	if t.BytesBilled != nil {
		parts = append(parts, "**"+fmtBytes(t.BytesBilled)+"** billed")
	}
	if t.SlotMS != nil {
		parts = append(parts, "**"+fmtDuration(time.Duration(*t.SlotMS)*time.Millisecond)+"** of slot time")
	}
	if t.RowsAffected != nil {
		parts = append(parts, "**"+fmtCount(t.RowsAffected)+"** rows affected")
	}
	if t.Queries > 0 {
		parts = append(parts, plural(t.Queries, "query id"))
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, " · ")
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// fmtBytes renders a byte count in binary units ("1.5 GiB"), or "".
func fmtBytes(p *int64) string {
	if p == nil {
		return ""
	}
	n := float64(*p)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if n < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", *p)
			}
			return fmt.Sprintf("%.1f %s", n, u)
		}
		n /= 1024
	}
	return ""
}

// fmtCount renders a count with thousands separators, or "".
func fmtCount(p *int64) string {
	if p == nil {
		return ""
	}
	s := fmt.Sprint(*p)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
