package attestor

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestGC(t *testing.T) {
	dir := manifestDir(t)
	live, start := startSleep(t)
	reused, reusedStart := startSleep(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid

	keep := []string{
		writeFor(t, dir, live, start),                               // its process runs
		filepath.Join(dir, tempName(live, start)+"abcd"+tempSuffix), // a launch in progress
		filepath.Join(dir, "README"),                                // not ours
		filepath.Join(dir, "0042x.json"),                            // not a manifest name
	}
	remove := []string{
		writeFor(t, dir, deadPID, 12345),                               // process gone
		writeFor(t, dir, reused, reusedStart+1),                        // PID reused
		filepath.Join(dir, tempName(deadPID, 12345)+"ffff"+tempSuffix), // abandoned launch
	}
	for _, p := range append(keep[1:], remove[2]) {
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	n, err := GC(dir, "")
	if err != nil || n != len(remove) {
		t.Errorf("GC = %d, %v; want %d", n, err, len(remove))
	}
	for _, p := range keep {
		if !exists(p) {
			t.Errorf("%s removed", p)
		}
	}
	for _, p := range remove {
		if exists(p) {
			t.Errorf("%s kept", p)
		}
	}
	if n, err := GC(dir, ""); n != 0 || err != nil {
		t.Errorf("second GC = %d, %v", n, err)
	}
}

// TestGCWaitsForLaunchers checks that the opportunistic clean-up does not
// run while a launcher holds the directory.
func TestGCWaitsForLaunchers(t *testing.T) {
	dir := manifestDir(t)
	stale := writeFor(t, dir, 0x7ffffff0, 1) // no such PID (above pid_max)
	lock, err := lockDir(dir, lockShared)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := gcIfIdle(dir, ""); n != 0 || err != nil || !exists(stale) {
		t.Errorf("gcIfIdle while locked = %d, %v", n, err)
	}
	lock.unlock()
	if n, err := gcIfIdle(dir, ""); n != 1 || err != nil || exists(stale) {
		t.Errorf("gcIfIdle = %d, %v", n, err)
	}
}
