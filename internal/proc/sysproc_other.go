//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the child in its own process group. Outside Linux
// there is no parent-death signal: a child outlives a dbtorch killed with
// SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
