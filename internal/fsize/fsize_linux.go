// Package fsize sets a real file size limit for tests of what happens when
// a disk fills up: RLIMIT_FSIZE on the test process. Go ignores SIGXFSZ,
// so a write past the limit fails with EFBIG, as a full disk fails with
// ENOSPC, and nothing needs mounting.
package fsize

import (
	"syscall"
	"testing"
)

// Limit sets the process's file size limit to n bytes until the returned
// function (also registered as a cleanup) lifts it. It skips the test when
// the limit cannot be set.
func Limit(t testing.TB, n uint64) (lift func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: old.Max}); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	lift = func() { syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) }
	t.Cleanup(lift)
	return lift
}
