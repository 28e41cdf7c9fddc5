//go:build unix

package mcpgw

import (
	"os/exec"
	"syscall"
	"time"
)

// setProcessGroup starts the child in its own process group, so that
// stopping it stops what it started (npx starts node).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// stopProcess sends SIGTERM to the child's process group and SIGKILL
// after grace, unless dead is closed first.
func stopProcess(cmd *exec.Cmd, dead <-chan struct{}, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	go func() {
		select {
		case <-dead: // reaped: its group id may be reused now
		case <-time.After(grace):
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
}
