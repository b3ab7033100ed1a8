package dbttest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// ProcParent returns pid's parent pid and its state letter ("R", "S",
// "Z", ...) from /proc/<pid>/stat (Linux), or 0 and "" when pid is gone.
func ProcParent(t testing.TB, pid int) (ppid int, state string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		t.Fatalf("dbttest: /proc/%d/stat: %q", pid, s)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("dbttest: /proc/%d/stat: %v", pid, err)
	}
	return ppid, f[0]
}

// ProcChildren returns the pids of pid's live children (not zombies),
// from /proc (Linux), in no order.
func ProcChildren(t testing.TB, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("dbttest: %v", err)
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := ProcParent(t, p); ppid == pid && state != "" && state != "Z" {
			kids = append(kids, p)
		}
	}
	return kids
}
