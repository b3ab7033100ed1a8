package dbttest

import (
	"slices"
	"time"
)

// Interval is a span of time, such as a node's run: [Start, End].
type Interval struct{ Start, End time.Time }

// PeakOverlap returns the most intervals that overlap at one instant; an
// interval that ends at the instant another starts does not overlap it.
func PeakOverlap(ivs []Interval) int {
	type ev struct {
		t time.Time
		d int
	}
	evs := make([]ev, 0, 2*len(ivs))
	for _, iv := range ivs {
		evs = append(evs, ev{iv.Start, 1}, ev{iv.End, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.d - b.d // ends before starts at the same instant
	})
	peak, cur := 0, 0
	for _, e := range evs {
		cur += e.d
		peak = max(peak, cur)
	}
	return peak
}
