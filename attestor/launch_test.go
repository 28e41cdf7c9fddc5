package attestor

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLaunchPrepare writes the manifest of the test process itself, as the
// launcher does just before exec, and attests it.
func TestLaunchPrepare(t *testing.T) {
	dir := manifestDir(t)
	stale := writeFor(t, dir, 0x7ffffff0, 1) // removed on the way
	sleepPath, _ := exec.LookPath("sleep")
	l := &Launch{Incarnation: testIncarnation, Dir: dir, Claims: testClaims(), Path: sleepPath, ExeDigest: true,
		Now: func() time.Time { return testNow }}
	path, err := l.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if exists(stale) {
		t.Error("stale manifest not removed by the launcher")
	}
	data, _ := os.ReadFile(path)
	m, err := ParseManifest(data)
	if err != nil || m.PID != os.Getpid() || m.StartTime != mustStat(t, os.Getpid()).StartTime {
		t.Fatalf("manifest %s = %+v, %v", data, m, err)
	}
	// The namespaces of the thread that will exec: the process's.
	if ns := mustNS(t, os.Getpid()); m.UserNS != ns.User || m.MntNS != ns.Mnt {
		t.Errorf("user_ns %d, mnt_ns %d; want the process's %+v", m.UserNS, m.MntNS, ns)
	}
	if want, _ := ExecutableDigest(sleepPath); m.ExeSHA256 != want {
		t.Errorf("exe_sha256 = %q, want %q", m.ExeSHA256, want)
	}
	// The test process is the launcher itself: it wrote the manifest, so
	// only allow_same_user accepts it.
	a, _ := newTest(t, Config{ManifestDir: dir, AllowSameUser: true})
	self, _ := os.Executable()
	if sel, err := a.Attest(os.Getpid()); err != nil || !slices.Equal(sel, withExe(t, wantSelectors, self)) {
		t.Errorf("Attest(self) = %q, %v", sel, err)
	}
	if os.Geteuid() == 0 {
		strict, _ := newTest(t, Config{ManifestDir: dir})
		if res, err := strict.Resolve(os.Getpid()); err != nil || res.Selectors != nil ||
			!errors.Is(res.Refused, &ManifestError{Reason: ReasonAgentWritesDir}) {
			t.Errorf("Resolve(self) without allow_same_user = %+v, %v; want refused", res, err)
		}
	}
}

func TestLaunchRefuses(t *testing.T) {
	unsafe := manifestDir(t)
	chmod(t, unsafe, 0o777)
	expired := testClaims()
	expired.Deadline = testNow.Add(-time.Second)
	for name, tt := range map[string]struct {
		l    Launch
		want string
	}{
		"unsafe dir": {Launch{Incarnation: testIncarnation, Dir: unsafe, Claims: testClaims()}, "is world-writable (mode 0777); fix: chmod o-w"},
		"expired":    {Launch{Incarnation: testIncarnation, Dir: manifestDir(t), Claims: expired}, "deadline 2026-11-29T10:59:59Z has passed"},
		"invalid":    {Launch{Incarnation: testIncarnation, Dir: manifestDir(t)}, "task record: svid: claims rejected"},
	} {
		tt.l.Now = func() time.Time { return testNow }
		if _, err := tt.l.Prepare(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Prepare = %v, want %q", name, err, tt.want)
		}
	}
}

func TestExecutableDigestScript(t *testing.T) {
	dir := t.TempDir()
	sh, _ := exec.LookPath("sh")
	want, err := ExecutableDigest(sh)
	if err != nil {
		t.Fatal(err)
	}
	for name, line := range map[string]string{
		"direct": "#!" + sh + " -e\n",
		"env":    "#!/usr/bin/env sh\n",
		"env -S": "#!/usr/bin/env -S sh -e\n",
	} {
		script := dir + "/" + strings.ReplaceAll(name, " ", "")
		os.WriteFile(script, []byte(line+"echo hi\n"), 0o755)
		if got, err := ExecutableDigest(script); err != nil || got != want {
			t.Errorf("%s: ExecutableDigest = %q, %v; want the interpreter's %q", name, got, err, want)
		}
	}
}

// TestLaunchCheckUser: a non-root launcher (uid 61002, with CAP_SETUID and
// CAP_SETGID) owns the directory and its manifests; an agent sharing its
// uid, or a uid among the manifest owners, is refused before anything is
// written. (The CLI tests cover root, groups and unknown users.)
func TestLaunchCheckUser(t *testing.T) {
	needRoot(t)
	dir := manifestDir(t)
	chown(t, dir, launcherUID, 0)
	policy := DirPolicy{Owners: []uint32{0, launcherUID, 61003}}
	for _, tt := range []struct {
		user Credential
		want string
	}{
		{Credential{UID: launcherUID, GID: testAgentGID}, "could forge manifests in " + dir + ": real uid 61002 owns the directory (mode 0750)"},
		{Credential{UID: 61003, GID: testAgentGID}, "real uid 61003 is an allowed manifest owner [0 61002 61003]"},
		{Credential{UID: 0, GID: testAgentGID}, "refusing to run the agent as root (uid 0)"},
		{Credential{UID: uint32(os.Getuid()), GID: testAgentGID}, "refusing to run the agent as root"},
		{Credential{UID: testAgentUID, GID: testAgentGID}, ""},
	} {
		l := &Launch{Incarnation: testIncarnation, Dir: dir, Policy: policy, Claims: testClaims(), User: &tt.user}
		err := l.CheckUser()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckUser(%+v) = %v, want %q", tt.user, err, tt.want)
		}
	}
}
