//go:build !linux

package attestor

import "errors"

// IsolateExec is only implemented on Linux.
func IsolateExec() error {
	return errors.New("attestor: launch: isolating the agent is only implemented on Linux")
}
