package spiretest

import "syscall"

// sysProcAttr makes Linux send SIGTERM to a SPIRE process when the test
// binary dies without running its cleanups (e.g. on a test timeout). The
// signal is tied to the thread that started the process, which the Go
// runtime does not end while the program runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
