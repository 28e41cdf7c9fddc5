package attestor

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkAttest measures one Attest of a live process (as root: the
// process runs as an unprivileged uid, so the manifest cases include the
// checks of its credentials). "proc-status" is
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
	if _, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: pid, StartTime: start, ExeSHA256: sum, Claims: testClaims()}.in(b, "", pid)); err != nil {
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
			// The median of the calls ("p50-ns"), beside the mean: on a
			// shared machine a few stalled calls move the mean a lot.
			took := make([]time.Duration, 0, 1024)
			for b.Loop() {
				start := time.Now()
				sel, err := a.Attest(pid)
				took = append(took, time.Since(start))
				if err != nil || len(sel) != want {
					b.Fatalf("Attest = %q, %v", sel, err)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
		}
	}
	b.Run("manifest", run(plain, pid, len(wantSelectors)+2)) // + the exe pins
	b.Run("manifest-exe-pinned", run(pinned, pid, len(wantSelectors)+2))
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
