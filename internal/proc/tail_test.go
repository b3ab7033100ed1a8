package proc_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/dbtorch/dbtorch/internal/proc"
)

func TestTailBuffer(t *testing.T) {
	tb := proc.NewTail(16)
	for i := range 10 {
		fmt.Fprintf(tb, "line %d\n", i)
	}
	assert.Equal(t, "7\nline 8\nline 9", tb.Lines(5), "keeps the last 16 bytes only")
	tb = proc.NewTail(1024)
	tb.Write([]byte("\x1b[0m12:00  \x1b[31mERROR\x1b[0m x\nA\nB\nC\n"))
	assert.Equal(t, "12:00  ERROR x\nA\nB\nC", tb.Lines(10))
	assert.Equal(t, "B\nC", tb.Lines(2))
	big := strings.Repeat("x", 2000)
	tb.Write([]byte(big))
	assert.Len(t, tb.Lines(1), 1024)
}
