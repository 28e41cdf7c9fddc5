//go:build unix

package daemon_test

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// A real SIGHUP reloads the policy: with the watch's debounce set beyond
// the test's end, only the signal can load the flipped release.
func TestSIGHUPReloadsFlippedRelease(t *testing.T) {
	f := start(t)
	symlinkRelease(t, f)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runDebounced(t, f, time.Hour) // Run has called signal.Notify once Watching is closed
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	flipLink(t, f.policyDir, release(t, f, "v2", kbPost))
	if !get() {
		t.Fatal("release 2 loaded before the SIGHUP (debounce of an hour)")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIGHUP did not load release 2", not(get))
}
