package attestor

import (
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Throw-away ids of the forger tests (no passwd or group entries needed).
const (
	launcherUID   = 61002 // a non-root launcher: owns the directory and the manifests
	launcherGroup = 61010 // the launchers' group of a 0770 directory
	otherGroup    = 61011
)

// TestAttestRefusesForger runs real agents under real distinct uids and
// gids: each one that could have written its own manifest (the issue's
// "Bad input" list) gets no selectors and a warning naming the reason; a
// dedicated unprivileged agent gets its task.
func TestAttestRefusesForger(t *testing.T) {
	needRoot(t)
	agent := func(uid, gid uint32, groups ...uint32) *syscall.Credential {
		return &syscall.Credential{Uid: uid, Gid: gid, Groups: append([]uint32{}, groups...)}
	}
	tests := []struct {
		name   string
		cred   *syscall.Credential
		dir    func(t *testing.T, dir string) // adjusts the directory
		cfg    func(*Config)
		owner  int // manifest owner uid, -1: root
		reason Reason
		detail string
	}{
		{name: "dedicated unprivileged agent", cred: agent(testAgentUID, testAgentGID), owner: -1},
		{name: "agent in the 0750 group may read, not write", cred: agent(testAgentUID, testAgentGID, launcherGroup),
			dir: func(t *testing.T, d string) { chown(t, d, 0, launcherGroup) }, owner: -1},
		{name: "agent as root", cred: agent(0, 0), owner: -1,
			reason: ReasonAgentWritesDir, detail: "real uid is 0 (root writes any directory)"},
		{name: "agent in the launcher group", cred: agent(testAgentUID, testAgentGID, launcherGroup),
			dir: func(t *testing.T, d string) { chown(t, d, 0, launcherGroup); chmod(t, d, 0o770) }, owner: -1,
			reason: ReasonAgentWritesDir, detail: "member of the directory's group 61010 (mode 0770)"},
		{name: "agent's primary group can write the directory", cred: agent(testAgentUID, otherGroup),
			dir: func(t *testing.T, d string) { chown(t, d, 0, otherGroup); chmod(t, d, 0o770) }, owner: -1,
			reason: ReasonAgentWritesDir, detail: "real gid 61011 is the directory's group (mode 0770)"},
		{name: "agent shares the launcher's uid", cred: agent(launcherUID, testAgentGID),
			dir:   func(t *testing.T, d string) { chown(t, d, launcherUID, 0) },
			cfg:   func(c *Config) { c.AllowedOwnerUIDs = []uint32{0, launcherUID} },
			owner: launcherUID, reason: ReasonAgentWritesDir, detail: "real uid 61002 owns the directory (mode 0750)"},
		{name: "manifest owned by the agent's uid", cred: agent(testAgentUID, testAgentGID),
			cfg:   func(c *Config) { c.AllowedOwnerUIDs = []uint32{0, testAgentUID} },
			owner: testAgentUID, reason: ReasonAgentOwnsManifests, detail: "real uid 61001 is an allowed manifest owner [0 61001]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := manifestDir(t)
			if tt.dir != nil {
				tt.dir(t, dir)
			}
			pid := startAs(t, tt.cred, "sleep", "60").Process.Pid
			path := writeFor(t, dir, pid, mustStat(t, pid).StartTime)
			if tt.owner >= 0 {
				chown(t, path, tt.owner, -1)
			}
			cfg := Config{ManifestDir: dir}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			a, rec := newTest(t, cfg)
			res, err := a.Resolve(pid)
			if err != nil {
				t.Fatal(err)
			}
			if tt.reason == 0 {
				if !slices.Equal(res.Selectors, withExe(t, wantSelectors, "sleep")) || len(rec.warnings()) != 0 {
					t.Errorf("Resolve = %+v, warnings %q; want the task's selectors", res, rec.warnings())
				}
				return
			}
			if res.Selectors != nil || !errors.Is(res.Refused, &ManifestError{Reason: tt.reason}) {
				t.Fatalf("Resolve = %+v; want no selectors, refused: %s", res, tt.reason)
			}
			if !strings.Contains(res.Refused.Detail, tt.detail) {
				t.Errorf("detail = %q, want %q", res.Refused.Detail, tt.detail)
			}
			w := rec.warnings()
			if len(w) != 1 || !strings.Contains(w[0], tt.reason.String()) || !strings.Contains(w[0], path) {
				t.Errorf("warnings = %q, want one naming %s and %q", w, path, tt.reason)
			}
			// The development opt-out accepts it.
			cfg.AllowSameUser = true
			dev, _ := newTest(t, cfg)
			if sel, _ := dev.Attest(pid); !slices.Equal(sel, withExe(t, wantSelectors, "sleep")) {
				t.Errorf("allow_same_user: %q", sel)
			}
		})
	}
}

// TestAttestRefusesForgerInherited: a tool that inherits the task of an
// agent running as root is refused even though the tool itself dropped to
// an unprivileged uid: the process holding the manifest could have
// written it.
func TestAttestRefusesForgerInherited(t *testing.T) {
	needRoot(t)
	dir := manifestDir(t)
	top := startAs(t, nil, "sh", "-c", "setpriv --reuid 61001 --regid 61001 --clear-groups sleep 60 & wait").Process.Pid
	leaf := childOf(t, top)
	waitComm(t, leaf, "sleep")
	writeFor(t, dir, top, mustStat(t, top).StartTime)
	a, _ := newTest(t, Config{ManifestDir: dir, InheritDepth: 1})
	res, err := a.Resolve(leaf)
	if err != nil || res.Selectors != nil || !errors.Is(res.Refused, &ManifestError{Reason: ReasonAgentWritesDir}) {
		t.Errorf("Resolve(tool) = %+v, %v; want refused", res, err)
	}
}

func TestParseStatus(t *testing.T) {
	c, err := ParseStatus([]byte("Name:\tsleep\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \nCapPrm:\t0000000000000080\nCapEff:\t0000000000000000\n"))
	if err != nil || c.UIDs != [4]uint32{1, 2, 3, 4} || c.GIDs != [4]uint32{5, 6, 7, 8} ||
		!slices.Equal(c.Groups, []uint32{9, 10}) || c.CapPrm != 0x80 {
		t.Errorf("ParseStatus = %+v, %v", c, err)
	}
	if f := CouldForge(c, DirStat{UID: 0, GID: 0, Mode: 0o750}, []uint32{0}); f == nil || f.Detail != "holds CAP_SETUID" {
		t.Errorf("CAP_SETUID in the permitted set: %+v", f)
	}
	for _, bad := range []string{"Uid:\t1\t2\nGid:\t1\t1\t1\t1\n", "Gid:\t1\t1\t1\t1\n", "Uid:\tx\t1\t1\t1\nGid:\t1\t1\t1\t1\n"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// TestCouldForgeAnyCapability: the README's precondition is an agent with
// no capabilities at all. Beyond the six that write the manifest
// directory directly, CAP_SYS_PTRACE takes over the launcher or the SPIRE
// agent, CAP_DAC_READ_SEARCH reads the SPIRE agent's keys, CAP_SYS_MODULE
// and CAP_BPF own the kernel: any capability held is refused (review 5).
func TestCouldForgeAnyCapability(t *testing.T) {
	d := DirStat{UID: 0, GID: 0, Mode: 0o755}
	for _, c := range []struct {
		name string
		bit  uint
	}{
		{"CAP_DAC_READ_SEARCH", 2}, {"CAP_SETPCAP", 8}, {"CAP_SYS_MODULE", 16}, {"CAP_SYS_RAWIO", 17},
		{"CAP_SYS_PTRACE", 19}, {"CAP_MKNOD", 27}, {"CAP_SETFCAP", 31}, {"CAP_BPF", 39}, {"CAP_CHOWN", 0},
	} {
		for _, eff := range []bool{false, true} {
			cr := UserCreds(61001, 61001, nil)
			cr.CapPrm = 1 << c.bit
			if eff {
				cr.CapEff = 1 << c.bit
			}
			f := CouldForge(cr, d, []uint32{0})
			if f == nil {
				t.Errorf("an agent holding %s (effective %v) is not refused", c.name, eff)
			} else if !strings.Contains(f.Detail, c.name) {
				t.Errorf("%s: the refusal does not name it: %s", c.name, f.Detail)
			}
		}
	}
	if f := CouldForge(UserCreds(61001, 61001, nil), d, []uint32{0}); f != nil {
		t.Fatalf("an agent without capabilities refused: %+v", f)
	}
}
