package dbttest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

func TestPeakOverlap(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	span := func(a, b int) dbttest.Interval { return dbttest.Interval{Start: at(a), End: at(b)} }
	assert.Zero(t, dbttest.PeakOverlap(nil))
	assert.Equal(t, 1, dbttest.PeakOverlap([]dbttest.Interval{span(0, 10), span(10, 20)}), "touching spans do not overlap")
	assert.Equal(t, 3, dbttest.PeakOverlap([]dbttest.Interval{span(0, 10), span(5, 15), span(9, 12), span(12, 30)}))
}
