//go:build !unix

package mcpgw

import (
	"os/exec"
	"time"
)

func setProcessGroup(*exec.Cmd) {}

func stopProcess(cmd *exec.Cmd, dead <-chan struct{}, grace time.Duration) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
