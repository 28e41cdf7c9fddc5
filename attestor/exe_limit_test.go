package attestor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// copyExe copies the program name into a fresh directory readable by the
// test agents and returns its path.
func copyExe(t *testing.T, name string) string {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "aiexe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	from, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "agent")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// touch sets the file's times to now, as its owner may do to an
// executable that runs (it changes the ctime).
func touch(t *testing.T, path string) {
	t.Helper()
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
}

// TestAttestOversizedExecutable: an agent must not make the SPIRE agent
// hash gigabytes per attestation. Review 16 ran an agent from a 4 GiB
// sparse executable (an ELF with zeros appended still runs) and touched it
// before each Workload API call: every attestation hashed 4 GiB again (2.9 s
// each). The attestor reads no executable over max_exe_bytes: the process
// gets its task selectors without the executable pins, nothing is hashed,
// and with require_exe_sha256 its manifest is refused, naming the limit.
func TestAttestOversizedExecutable(t *testing.T) {
	big := copyExe(t, "sleep")
	if err := os.Truncate(big, 4<<30); err != nil { // 4 GiB, sparse
		t.Fatal(err)
	}
	dir := manifestDir(t)
	cmd := startProcess(t, big, "60")
	pid := cmd.Process.Pid
	waitComm(t, pid, "agent")
	st := mustStat(t, pid)
	sleepPath, _ := exec.LookPath("sleep")
	sum, err := ExecutableDigest(sleepPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: pid, StartTime: st.StartTime, ExeSHA256: sum, Claims: testClaims()}.in(t, "", pid)); err != nil {
		t.Fatal(err)
	}
	a, rec := newTest(t, Config{ManifestDir: dir})
	for i := range 2 {
		if i == 1 {
			touch(t, big) // what the agent did before its next Workload API call
		}
		sel, err := a.Attest(pid)
		if err != nil || !slices.Equal(sel, wantSelectors) {
			t.Fatalf("attestation %d = %q, %v; want the task selectors without executable pins", i, sel, err)
		}
	}
	if n := a.cache.hashed.Load(); n != 0 {
		t.Errorf("the attestor hashed %d bytes of a 4 GiB executable", n)
	}
	if w := rec.warnings(); len(w) == 0 || !strings.Contains(w[0], "over max_exe_bytes 268435456") {
		t.Errorf("warnings = %q, want one naming max_exe_bytes", w)
	}

	pinned, _ := newTest(t, Config{ManifestDir: dir, RequireExeSHA256: true})
	res, err := pinned.Resolve(pid)
	if err != nil || res.Selectors != nil || res.Refused == nil || res.Refused.Reason != ReasonExeMismatch ||
		!strings.Contains(res.Refused.Detail, "4294967296 bytes, over max_exe_bytes 268435456") {
		t.Errorf("require_exe_sha256: Resolve = %+v, %v; want refused, naming the size and the limit", res, err)
	}
	if n := pinned.cache.hashed.Load(); n != 0 {
		t.Errorf("require_exe_sha256: the attestor hashed %d bytes", n)
	}
}

// TestAttestMaxExeBytes: the limit is the configured one, and below it an
// executable is hashed once until it changes. A touch changes the ctime
// and costs one more hash (bounded by the limit): the cache cannot tell a
// touch from a rewrite (see DigestCache).
func TestAttestMaxExeBytes(t *testing.T) {
	exe := copyExe(t, "sleep")
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := manifestDir(t)
	pid := startProcess(t, exe, "60").Process.Pid
	waitComm(t, pid, "agent")
	writeFor(t, dir, pid, mustStat(t, pid).StartTime)

	small, _ := newTest(t, Config{ManifestDir: dir, MaxExeBytes: fi.Size() - 1})
	if sel, err := small.Attest(pid); err != nil || !slices.Equal(sel, wantSelectors) {
		t.Errorf("max_exe_bytes below the size: Attest = %q, %v; want no executable pins", sel, err)
	}
	if n := small.cache.hashed.Load(); n != 0 {
		t.Errorf("max_exe_bytes below the size: hashed %d bytes", n)
	}

	a, _ := newTest(t, Config{ManifestDir: dir, MaxExeBytes: fi.Size()})
	want := withExe(t, wantSelectors, "sleep")
	for i, wantHashed := range []int64{fi.Size(), fi.Size(), 2 * fi.Size()} {
		if i == 2 {
			touch(t, exe)
		}
		if sel, err := a.Attest(pid); err != nil || !slices.Equal(sel, want) {
			t.Fatalf("attestation %d = %q, %v", i, sel, err)
		}
		if n := a.cache.hashed.Load(); n != wantHashed {
			t.Errorf("after attestation %d: %d bytes hashed, want %d", i, n, wantHashed)
		}
	}
}

// TestDigestCacheOneHashPerInode: concurrent requests for one executable
// share one hash (an agent opening many Workload API connections at once
// costs one read of its executable).
func TestDigestCacheOneHashPerInode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	data := []byte(strings.Repeat("x", 3<<20))
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c := NewDigestCache(0)
	release := make(chan struct{})
	c.beforeHash = func() { <-release }
	const callers = 8
	var wg sync.WaitGroup
	digests := make([]string, callers)
	for i := range callers {
		wg.Go(func() {
			d, err := c.FileDigest(context.Background(), path, 0)
			if err != nil {
				t.Error(err)
			}
			digests[i] = d
		})
	}
	waitWaiters(t, c, callers)
	close(release)
	wg.Wait()
	if n := c.hashed.Load(); n != int64(len(data)) {
		t.Errorf("%d callers hashed %d bytes, want one hash of %d", callers, n, len(data))
	}
	if digests[0] == "" || slices.ContainsFunc(digests, func(d string) bool { return d != digests[0] }) {
		t.Errorf("digests = %q", digests)
	}
}

// TestDigestCacheCancel: a caller whose context ends stops waiting, and a
// hash nobody waits for any more stops reading (SPIRE cancels the
// attestation of a client that went away); the next caller hashes anew.
func TestDigestCacheCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 3<<20)), 0o755); err != nil {
		t.Fatal(err)
	}
	c := NewDigestCache(0)
	release := make(chan struct{})
	c.beforeHash = func() { <-release }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.FileDigest(ctx, path, 0)
		done <- err
	}()
	waitWaiters(t, c, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("FileDigest after cancel = %v, want context.Canceled", err)
	}
	close(release) // the abandoned hash goes on: it must read nothing
	d, err := c.FileDigest(context.Background(), path, 0)
	if err != nil || d == "" {
		t.Fatalf("FileDigest after an abandoned hash = %q, %v", d, err)
	}
	if n := c.hashed.Load(); n != 3<<20 {
		t.Errorf("hashed %d bytes, want the file once (%d): the abandoned hash read on", n, 3<<20)
	}
}

// waitWaiters polls until n callers wait for the one hash in flight.
func waitWaiters(t *testing.T, c *DigestCache, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c.mu.Lock()
		got := 0
		for _, fl := range c.flights {
			got += fl.waiters
		}
		c.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
	t.Fatalf("%d callers did not all wait for the hash within 10s", n)
}

// TestAttestContextCancelled: an attestation whose context has ended
// returns its error and no selectors (the plugin answers Canceled).
func TestAttestContextCancelled(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	writeFor(t, dir, pid, start)
	a, _ := newTest(t, Config{ManifestDir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sel, err := a.AttestContext(ctx, pid); sel != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("AttestContext(cancelled) = %q, %v; want no selectors and context.Canceled", sel, err)
	}
	if sel, err := a.AttestContext(context.Background(), pid); err != nil || len(sel) == 0 {
		t.Errorf("AttestContext = %q, %v", sel, err)
	}
}
