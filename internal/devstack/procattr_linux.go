package devstack

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a Ctrl-C
// in the terminal reaches only the program, which then stops the children
// in order, and makes Linux send the child SIGTERM when the process that
// started it dies without stopping it (e.g. `agentid dev` killed with
// SIGKILL). The latter is tied to the OS thread that started the child,
// which the Go runtime does not end while the program runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
