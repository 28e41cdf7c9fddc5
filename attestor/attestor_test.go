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
	"syscall"
	"testing"
	"time"
)

func TestAttestMatchingStartTime(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	path := writeFor(t, dir, pid, start)
	a, rec := newTest(t, Config{ManifestDir: dir})
	res, err := a.Resolve(pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := withExe(t, wantSelectors, "sleep"); !slices.Equal(res.Selectors, want) {
		t.Errorf("selectors = %q, want %q", res.Selectors, want)
	}
	if res.Path != path || res.Depth != 0 || res.Refused != nil || res.Manifest.PID != pid {
		t.Errorf("result = %+v", res)
	}
	if w := rec.warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("manifest mode = %v, %v; want 0640", fi.Mode(), err)
	}
}

func TestAttestNoManifest(t *testing.T) {
	for name, dir := range map[string]string{
		"empty dir":   manifestDir(t),
		"missing dir": filepath.Join(t.TempDir(), "absent"),
	} {
		t.Run(name, func(t *testing.T) {
			pid, _ := startSleep(t)
			a, rec := newTest(t, Config{ManifestDir: dir, InheritDepth: 2})
			sel, err := a.Attest(pid)
			if sel != nil || err != nil {
				t.Errorf("Attest = %q, %v; want nil, nil", sel, err)
			}
			if w := rec.warnings(); len(w) != 0 {
				t.Errorf("warnings: %q", w)
			}
		})
	}
}

func TestAttestNoProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	a, _ := newTest(t, Config{ManifestDir: manifestDir(t)})
	if _, err := a.Attest(cmd.Process.Pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("err = %v, want ErrNoProcess", err)
	}
}

// TestAttestStaleStartTime simulates PID reuse: the manifest names the PID
// but another start time. It is skipped and removed.
func TestAttestStaleStartTime(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	path := writeFor(t, dir, pid, start-1)
	a, rec := newTest(t, Config{ManifestDir: dir})
	res, err := a.Resolve(pid)
	if err != nil || res.Selectors != nil || res.Refused != nil {
		t.Errorf("Resolve = %+v, %v; want nothing", res, err)
	}
	if exists(path) {
		t.Errorf("stale manifest %s not removed", path)
	}
	if w := rec.warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
}

// TestAttestRefused covers the manifests that must yield no selectors and a
// warning naming the file and the reason.
func TestAttestRefused(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*Config)
		tamper func(t *testing.T, dir, path string, pid int, start uint64)
		reason Reason
	}{
		{
			name:   "group-writable",
			tamper: func(t *testing.T, _, path string, _ int, _ uint64) { chmod(t, path, 0o660) },
			reason: ReasonWritable,
		},
		{
			name:   "world-writable",
			tamper: func(t *testing.T, _, path string, _ int, _ uint64) { chmod(t, path, 0o642) },
			reason: ReasonWritable,
		},
		{
			name: "symlink",
			tamper: func(t *testing.T, dir, path string, _ int, _ uint64) {
				real := filepath.Join(t.TempDir(), "real.json")
				if err := os.Rename(path, real); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(real, path); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReasonNotRegular,
		},
		{
			name: "hard link",
			tamper: func(t *testing.T, dir, path string, _ int, _ uint64) {
				if err := os.Link(path, filepath.Join(dir, "copy")); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReasonHardLinked,
		},
		{
			name:   "owner not allowed",
			cfg:    func(c *Config) { c.AllowedOwnerUIDs = []uint32{4242} }, // the test's uid is not allowed
			reason: ReasonOwner,
		},
		{
			name: "fifo",
			tamper: func(t *testing.T, _, path string, _ int, _ uint64) {
				os.Remove(path)
				if err := syscall.Mkfifo(path, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReasonNotRegular,
		},
		{
			name: "another pid's manifest",
			tamper: func(t *testing.T, dir, path string, pid int, start uint64) {
				other := writeFor(t, dir, pid+100000, start)
				if err := os.Rename(other, path); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReasonPIDMismatch,
		},
		{
			name: "not a manifest",
			tamper: func(t *testing.T, _, path string, _ int, _ uint64) {
				os.WriteFile(path, []byte(`{"version":1,"pid":1}`), 0o640)
			},
			reason: ReasonMalformed,
		},
		{
			name: "unknown key",
			tamper: func(t *testing.T, _, path string, _ int, _ uint64) {
				b, _ := os.ReadFile(path)
				os.WriteFile(path, append([]byte(`{"admin":true,`), b[1:]...), 0o640)
			},
			reason: ReasonMalformed,
		},
		{
			name: "world-writable directory",
			tamper: func(t *testing.T, dir, _ string, _ int, _ uint64) {
				chmod(t, dir, 0o777)
			},
			reason: ReasonUnsafeDir,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := manifestDir(t)
			pid, start := startSleep(t)
			path := writeFor(t, dir, pid, start)
			if tt.tamper != nil {
				tt.tamper(t, dir, path, pid, start)
			}
			cfg := Config{ManifestDir: dir, InheritDepth: 1}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			a, rec := newTest(t, cfg)
			res, err := a.Resolve(pid)
			if err != nil {
				t.Fatal(err)
			}
			if res.Selectors != nil {
				t.Errorf("selectors = %q, want none", res.Selectors)
			}
			if !errors.Is(res.Refused, &ManifestError{Reason: tt.reason}) {
				t.Errorf("refused = %v, want reason %s", res.Refused, tt.reason)
			}
			w := rec.warnings()
			want := res.Refused.Path
			if len(w) != 1 || !strings.Contains(w[0], want) || !strings.Contains(w[0], tt.reason.String()) {
				t.Errorf("warnings = %q, want one naming %s and %q", w, want, tt.reason)
			}
		})
	}
}

func TestAttestExpired(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	writeFor(t, dir, pid, start)
	rec := &recorder{}
	a, err := New(Config{ManifestDir: dir}, WithLogger(rec),
		WithClock(func() time.Time { return testClaims().Deadline }))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Resolve(pid)
	if err != nil || res.Selectors != nil || !errors.Is(res.Refused, &ManifestError{Reason: ReasonExpired}) {
		t.Errorf("Resolve = %+v, %v; want refused as expired", res, err)
	}
	if len(rec.warnings()) != 1 {
		t.Errorf("warnings = %q", rec.warnings())
	}
}

// TestAttestInherit walks from a grandchild (sleep) up to the process that
// has the manifest: sh -> sh -> sleep.
func TestAttestInherit(t *testing.T) {
	dir := manifestDir(t)
	top := startProcess(t, "sh", "-c", `sh -c 'sleep 60 & wait' & wait`).Process.Pid
	mid := childOf(t, top)
	leaf := childOf(t, mid)
	waitComm(t, leaf, "sleep")
	path := writeFor(t, dir, top, mustStat(t, top).StartTime)
	for _, tt := range []struct {
		pid, depth int
		want       bool
		wantDepth  int
	}{
		{pid: top, depth: 0, want: true},
		{pid: mid, depth: 0},
		{pid: mid, depth: 1, want: true, wantDepth: 1},
		{pid: leaf, depth: 1},
		{pid: leaf, depth: 2, want: true, wantDepth: 2},
		{pid: leaf, depth: MaxInheritDepth, want: true, wantDepth: 2},
	} {
		a, _ := newTest(t, Config{ManifestDir: dir, InheritDepth: tt.depth})
		res, err := a.Resolve(tt.pid)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Selectors != nil; got != tt.want || tt.want && (res.Depth != tt.wantDepth || res.Path != path) {
			t.Errorf("pid %d (top %d) inherit_depth %d: %+v; want selectors %v at depth %d",
				tt.pid, top, tt.depth, res, tt.want, tt.wantDepth)
		}
	}
	// The process's own manifest wins over its parent's.
	own := testClaims()
	own.Task = "T-own"
	if _, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: leaf, StartTime: mustStat(t, leaf).StartTime, Claims: own}.in(t, "", leaf)); err != nil {
		t.Fatal(err)
	}
	a, _ := newTest(t, Config{ManifestDir: dir, InheritDepth: 2})
	if sel, _ := a.Attest(leaf); len(sel) == 0 || sel[0] != "task:T-own" {
		t.Errorf("leaf with its own manifest: %q", sel)
	}
}

func TestAttestExeDigest(t *testing.T) {
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	sleepSum, err := ExecutableDigest(sleepPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, digest string
		want         bool
	}{
		{"matches", sleepSum, true},
		{"mismatch", strings.Repeat("ab", 32), false},
		{"absent", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := manifestDir(t)
			pid, start := startSleep(t)
			m := Manifest{Incarnation: testIncarnation, PID: pid, StartTime: start, ExeSHA256: tt.digest, Claims: testClaims()}.in(t, "", pid)
			if _, err := WriteManifest(dir, m); err != nil {
				t.Fatal(err)
			}
			cache := NewDigestCache(0)
			a, rec := newTest(t, Config{ManifestDir: dir, RequireExeSHA256: true})
			a.cache = cache
			for range 2 { // cold, then from the cache
				res, err := a.Resolve(pid)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Selectors != nil; got != tt.want {
					t.Errorf("selectors = %q, refused %v; want selectors %v", res.Selectors, res.Refused, tt.want)
				}
				if !tt.want && !errors.Is(res.Refused, &ManifestError{Reason: ReasonExeMismatch}) {
					t.Errorf("refused = %v", res.Refused)
				}
			}
			if tt.want && len(rec.warnings()) != 0 || !tt.want && len(rec.warnings()) != 2 {
				t.Errorf("warnings = %q", rec.warnings())
			}
			// Not required: the digest is not looked at.
			b, _ := newTest(t, Config{ManifestDir: dir})
			if sel, _ := b.Attest(pid); sel == nil {
				t.Error("without require_exe_sha256: no selectors")
			}
		})
	}
}

func TestDigestCacheInvalidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	os.WriteFile(path, []byte("one"), 0o755)
	c, ctx := NewDigestCache(0), context.Background()
	d1, err := c.FileDigest(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.FileDigest(ctx, path, 0); d != d1 {
		t.Fatal("cached digest differs")
	}
	f, _ := os.OpenFile(path, os.O_WRONLY, 0) // same inode, same size
	f.WriteString("two")
	f.Close()
	if d2, _ := c.FileDigest(ctx, path, 0); d2 == d1 {
		t.Error("digest of a rewritten file came from the cache")
	}
}

func TestAttestConcurrent(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	writeFor(t, dir, pid, start)
	a, _ := newTest(t, Config{ManifestDir: dir, RequireExeSHA256: false, InheritDepth: 3})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if sel, err := a.Attest(pid); err != nil || len(sel) != len(wantSelectors)+2 {
					t.Errorf("Attest = %q, %v", sel, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{InheritDepth: -1},
		{InheritDepth: MaxInheritDepth + 1},
		{ManifestDir: "relative/dir"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Config(); c.ManifestDir != DefaultManifestDir || c.ProcRoot != DefaultProcRoot || len(c.AllowedOwnerUIDs) == 0 {
		t.Errorf("defaults = %+v", c)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestAttestExeSelector: with an accepted manifest the attestor emits the
// executable pin of the binary the process really runs, so that an entry
// pinned to another binary (a re-launch of something else under a copied
// task record) does not match.
func TestAttestExeSelector(t *testing.T) {
	dir := manifestDir(t)
	pid, start := startSleep(t)
	writeFor(t, dir, pid, start)
	sleepPath, _ := exec.LookPath("sleep")
	sum, err := ExecutableDigest(sleepPath)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newTest(t, Config{ManifestDir: dir})
	sel, err := a.Attest(pid)
	if want := append(slices.Clone(wantSelectors), exePins(sum)...); err != nil || !slices.Equal(sel, want) {
		t.Errorf("Attest = %q, %v\nwant %q", sel, err, want)
	}
}
