package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentid/agentid/attestor"
)

// needRoot skips a test that launches agents as other uids.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it launches agents under throw-away uids and gids (CI runs as root)")
	}
}

// statusOf returns the lines of /proc/<pid>/status that start with key.
func statusOf(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// TestRunDropsPrivileges: `agentid run --user` writes the manifest as the
// launcher, then execs the agent with the agent's uids, gid and groups and
// no_new_privs, keeping the PID and the start time; the attestor, which
// refuses processes that could write the manifest directory, accepts it.
func TestRunDropsPrivileges(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	taskFile := filepath.Join(tmp, "task.json")
	want := runClaims(t, writeFile(t, tmp, "p", []byte("p")))
	if err := writeTaskRecord(taskFile, runIncarnation, want); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		args, env  []string
		gid, group string
	}{
		"flags":   {args: []string{"--user", "61001", "--group", "61002", "--groups", "61020,61021"}, gid: "61002", group: "61020 61021"},
		"env":     {env: []string{"AGENTID_RUN_USER=61001", "AGENTID_RUN_GROUP=61001"}, gid: "61001"},
		"cleared": {args: []string{"--user", "61001", "--group", "61001"}, gid: "61001"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, e := range tt.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			dir := runDir(t)
			args := append(append([]string{"run", "--manifest-dir", dir, "--task-file", taskFile}, tt.args...), "--", "sleep", "30")
			pid := launch(t, args...).Process.Pid
			if got := statusOf(t, pid, "Uid"); got != "61001 61001 61001 61001" {
				t.Errorf("Uid: %s", got)
			}
			if got := statusOf(t, pid, "Gid"); got != strings.Repeat(tt.gid+" ", 3)+tt.gid {
				t.Errorf("Gid: %s, want %s", got, tt.gid)
			}
			if got := statusOf(t, pid, "Groups"); got != tt.group {
				t.Errorf("Groups: %q, want %q", got, tt.group)
			}
			if got := statusOf(t, pid, "NoNewPrivs"); got != "1" {
				t.Errorf("NoNewPrivs: %s", got)
			}
			if got := statusOf(t, pid, "CapEff"); got != "0000000000000000" {
				t.Errorf("CapEff: %s", got)
			}
			data, err := os.ReadFile(filepath.Join(dir, attestor.ManifestName(pid)))
			if err != nil {
				t.Fatal(err)
			}
			m, err := attestor.ParseManifest(data)
			if st, _ := attestor.ReadStat("", pid); err != nil || m.PID != pid || m.StartTime != st.StartTime {
				t.Fatalf("manifest %+v, %v; process %+v", m, err, st)
			}
			a, err := attestor.New(attestor.Config{ManifestDir: dir, RequireExeSHA256: true})
			if err != nil {
				t.Fatal(err)
			}
			if sel, err := a.Attest(pid); err != nil || !slices.Equal(sel, append(m.Selectors(), m.ExeSelectors(m.ExeSHA256)...)) {
				t.Errorf("Attest = %q, %v", sel, err)
			}
		})
	}
}

// TestRunRefusesAgentUser: the launcher refuses, before writing a manifest,
// to exec an agent that could forge manifests, with a fix-it message.
func TestRunRefusesAgentUser(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	taskFile := filepath.Join(tmp, "task.json")
	writeTaskRecord(taskFile, runIncarnation, runClaims(t, writeFile(t, tmp, "p", []byte("p"))))
	launchers := runDir(t) // 0770 root:61010, launchers write through the group
	os.Chown(launchers, 0, 61010)
	os.Chmod(launchers, 0o770)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"root", []string{"--user", "root"}, "refusing to run the agent as root (uid 0)"},
		{"root by number", []string{"--user", "0", "--group", "61001"}, "refusing to run the agent as root (uid 0)"},
		{"unknown user", []string{"--user", "no-such-agentid-user"}, `--user "no-such-agentid-user": unknown user; create it (useradd --system --no-create-home --shell /usr/sbin/nologin no-such-agentid-user)`},
		{"unknown group", []string{"--user", "61001", "--group", "no-such-agentid-group"}, `--group "no-such-agentid-group": unknown group`},
		{"numeric uid without group", []string{"--user", "61001"}, "--user 61001 has no passwd entry: give --group"},
		{"agent in the launcher group", []string{"--manifest-dir", launchers, "--group-writable", "--user", "61001", "--group", "61001", "--groups", "61010"},
			"could forge manifests in " + launchers + ": member of the directory's group 61010 (mode 0770); fix: do not put the agent in the directory's group"},
		{"agent's group writes the directory", []string{"--manifest-dir", launchers, "--group-writable", "--user", "61001", "--group", "61010"},
			"real gid 61010 is the directory's group (mode 0770)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := runDir(t)
			args := append(append([]string{"run", "--manifest-dir", dir, "--task-file", taskFile}, tt.args...), "--", "sleep", "30")
			code, _, stderr := runCLI(t, args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q\nwant 1 and %q", code, stderr, tt.want)
			}
			for _, d := range []string{dir, launchers} {
				if names, _ := os.ReadDir(d); len(names) != 0 {
					t.Errorf("%s: manifest written: %v", d, names)
				}
			}
		})
	}
}

// TestRunRefusesSharedUID: two tasks under one uid can read each other's
// memory (/proc/<pid>/environ and mem, ptrace: an exec'd agent is
// dumpable), and so each other's SVID keys (review 5). The launcher
// refuses a uid that a live agent of another task in the directory runs
// as, naming it; the same task may run more processes under its uid, and
// the uid is free again once that agent is gone.
func TestRunRefusesSharedUID(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	dir := runDir(t)
	recA, recB := filepath.Join(tmp, "a.json"), filepath.Join(tmp, "b.json")
	a := runClaims(t, writeFile(t, tmp, "p", []byte("p")))
	b := a
	b.Task = "T-78"
	if err := writeTaskRecord(recA, runIncarnation, a); err != nil {
		t.Fatal(err)
	}
	if err := writeTaskRecord(recB, runIncarnation, b); err != nil {
		t.Fatal(err)
	}
	as := []string{"--user", "61001", "--group", "61001"}
	victim := launch(t, append(append([]string{"run", "--manifest-dir", dir, "--task-file", recA}, as...), "--", "sleep", "60")...)
	// in a helper process: accepted, it would exec "true" and exit 0
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestRunHelperProcess$", "--", "run", "--manifest-dir", dir, "--task-file", recB}, append(as, "--", "true")...)...)
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "uid 61001 already runs task "+a.Task) || !strings.Contains(string(out), fmt.Sprint("pid ", victim.Process.Pid)) {
		t.Fatalf("a second task under the same uid: %v, output %q", err, out)
	}
	// the same task: allowed; another uid: allowed
	launch(t, append(append([]string{"run", "--manifest-dir", dir, "--task-file", recA}, as...), "--", "sleep", "60")...)
	launch(t, append([]string{"run", "--manifest-dir", dir, "--task-file", recB, "--user", "61003", "--group", "61003"}, "--", "sleep", "60")...)
}
