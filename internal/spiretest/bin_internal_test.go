package spiretest

import (
	"os"
	"testing"
)

// TestBuildKeepsARunningBinary: a second test binary that builds the same
// command (same content, same name) must not replace the file another one
// is running. Replacing it, even atomically, gives the running process a new
// /proc/<pid>/exe target "<path> (deleted)", so SPIRE's unix attestor's
// path: selector no longer matches its entry and it gets no SVID (the CI
// failure of TestSignedRequestsOnRealSPIRE on 92b0f9b).
func TestBuildKeepsARunningBinary(t *testing.T) {
	first, err := goBuild("./cmd/agentid-attestor")
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := goBuild("./cmd/agentid-attestor") // as another test binary would
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatalf("second build = %q, want %q (same content, same name)", second, first)
	}
	after, err := os.Stat(second)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("second build replaced %s: a process running the first copy would see its executable as deleted", first)
	}
}
