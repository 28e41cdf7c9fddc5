//go:build !linux

package attestor

import "errors"

// DropPrivileges is only implemented on Linux.
func DropPrivileges(Credential) error {
	return errors.New("attestor: launch: dropping privileges is only implemented on Linux")
}
