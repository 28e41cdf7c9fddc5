package attestor

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// BenchmarkAttest measures one Attest of a live process. "proc-status" is
// the cost floor: reading /proc/<pid>/status once, as SPIRE's unix
// attestor does for every workload.
func BenchmarkAttest(b *testing.B) {
	dir := manifestDir(b)
	pid, start := startSleep(b)
	bare, _ := startSleep(b)
	sleepPath, _ := exec.LookPath("sleep")
	sum, err := ExecutableDigest(sleepPath)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := WriteManifest(dir, Manifest{PID: pid, StartTime: start, ExeSHA256: sum, Claims: testClaims()}); err != nil {
		b.Fatal(err)
	}
	plain, _ := newTest(b, Config{ManifestDir: dir})
	pinned, _ := newTest(b, Config{ManifestDir: dir, RequireExeSHA256: true})
	inherit, _ := newTest(b, Config{ManifestDir: dir, InheritDepth: 2})
	run := func(a *Attestor, pid, want int) func(*testing.B) {
		return func(b *testing.B) {
			if _, err := a.Attest(pid); err != nil { // warm
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				sel, err := a.Attest(pid)
				if err != nil || len(sel) != want {
					b.Fatalf("Attest = %q, %v", sel, err)
				}
			}
		}
	}
	b.Run("manifest", run(plain, pid, len(wantSelectors)+1)) // + the exe pin
	b.Run("manifest-exe-pinned", run(pinned, pid, len(wantSelectors)+1))
	b.Run("no-manifest", run(plain, bare, 0))
	b.Run("no-manifest-inherit-2", run(inherit, bare, 0))
	b.Run("proc-status", func(b *testing.B) {
		path := "/proc/" + strconv.Itoa(pid) + "/status"
		b.ReportAllocs()
		for b.Loop() {
			if _, err := os.ReadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
