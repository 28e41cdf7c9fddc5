package devstack

import "syscall"

// sysProcAttr makes Linux send SIGTERM to a child when the process that
// started it dies without stopping it (e.g. `agentid dev` killed with
// SIGKILL). The signal is tied to the OS thread that started the child,
// which the Go runtime does not end while the program runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
