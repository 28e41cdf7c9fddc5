//go:build !linux

package attestor

import "syscall"

// ctimeOf is 0 where the attestor does not run (it reads Linux's /proc):
// the package only builds there so that the CLI does.
func ctimeOf(*syscall.Stat_t) int64 { return 0 }
func mtimeOf(*syscall.Stat_t) int64 { return 0 }
