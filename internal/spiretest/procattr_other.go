//go:build !linux

package spiretest

import "syscall"

// sysProcAttr returns the default attributes: only Linux has Pdeathsig.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
