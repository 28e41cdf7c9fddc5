package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestRunHelperProcess is not a test: it is the agentid launcher when the
// test binary runs itself with GO_WANT_HELPER_PROCESS=1 (the os/exec
// tests' pattern). The agentid arguments follow "--".
func TestRunHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	os.Exit((&cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}).main(args[1:]))
}

// launch runs `agentid <args>` as a helper process and returns it once it
// has exec'd into `sleep` (same PID).
func launch(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestRunHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	var zombieSince time.Time
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		st, err := attestor.ReadStat("", cmd.Process.Pid)
		// A Go process that execs from a thread other than the leader
		// shows the leader as a zombie for a moment (the kernel's
		// de_thread): only a lasting 'Z' means the launcher exited.
		if err == nil && st.State == 'Z' {
			if zombieSince.IsZero() {
				zombieSince = time.Now()
			}
			if time.Since(zombieSince) < 2*time.Second {
				time.Sleep(2 * time.Millisecond)
				continue
			}
		}
		if err != nil || st.State == 'Z' {
			t.Fatalf("launcher exited before exec (%v); stderr:\n%s", err, stderr.String())
		}
		zombieSince = time.Time{}
		if st.Comm == "sleep" {
			return cmd
		}
		time.Sleep(2 * time.Millisecond) // polling, bounded by the deadline
	}
	t.Fatalf("pid %d did not exec sleep within 20s; stderr:\n%s", cmd.Process.Pid, stderr.String())
	return nil
}

func runClaims(t *testing.T, promptFile string) svid.Claims {
	prompt, err := svid.PromptDigestFiles(promptFile)
	if err != nil {
		t.Fatal(err)
	}
	return svid.Claims{
		V: svid.Version, Agent: "researcher", Task: "T-77", Model: "openai/gpt-4o", Prompt: prompt,
		Scope: []string{"kb:read", "web:search"}, Principal: "spiffe://example.org/user/alice",
		Chain:    []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
	}
}

func runDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tasks")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runIncarnation is the incarnation of the tests' task records.
const runIncarnation = "0123456789abcdef0123456789abcdef"

// entryIncarnation is the incarnation selector's of entry e.
func entryIncarnation(t *testing.T, e *types.Entry) string {
	t.Helper()
	for _, s := range e.GetSelectors() {
		if inc, ok := svid.ParseIncarnationSelector(s.GetValue()); ok {
			return inc
		}
	}
	t.Fatalf("entry %s has no incarnation selector", e.GetId())
	return ""
}

func TestRunExecsWithManifest(t *testing.T) {
	tmp := t.TempDir()
	promptFile := writeFile(t, tmp, "prompt.txt", []byte("You are a careful researcher.\n"))
	want := runClaims(t, promptFile)
	taskFile := filepath.Join(tmp, "task.json")
	if err := writeTaskRecord(taskFile, runIncarnation, want); err != nil {
		t.Fatal(err)
	}
	fromFlags := []string{"--agent", want.Agent, "--task", want.Task, "--model", want.Model,
		"--prompt-file", promptFile, "--scope", "kb:read", "--scope", "web:search",
		"--principal", want.Principal, "--chain", want.Chain[0], "--deadline", want.Deadline.Format(time.RFC3339),
		"--incarnation", runIncarnation}
	for name, flags := range map[string][]string{
		"flags":     fromFlags,
		"task file": {"--task-file", taskFile},
	} {
		t.Run(name, func(t *testing.T) {
			dir := runDir(t)
			args := append([]string{"run", "--manifest-dir", dir}, flags...)
			if os.Geteuid() == 0 { // the attestor refuses agents as root
				args = append(args, "--user", "61001", "--group", "61001")
			}
			pid := launch(t, append(args, "--", "sleep", "30")...).Process.Pid

			data, err := os.ReadFile(filepath.Join(dir, attestor.ManifestName(pid)))
			if err != nil {
				t.Fatal(err)
			}
			m, err := attestor.ParseManifest(data)
			if err != nil || m.PID != pid || !m.Claims.Equal(want) || m.ExeSHA256 == "" || m.Incarnation != runIncarnation {
				t.Fatalf("manifest = %+v, %v; want pid %d and %+v", m, err, pid, want)
			}
			a, err := attestor.New(attestor.Config{ManifestDir: dir, RequireExeSHA256: true})
			if err != nil {
				t.Fatal(err)
			}
			sel, err := a.Attest(pid)
			if want := append(m.Selectors(), m.ExeSelectors(m.ExeSHA256)...); err != nil || !slices.Equal(sel, want) {
				t.Errorf("Attest(%d) = %q, %v; want %q", pid, sel, err, want)
			}
		})
	}
}

func TestRunRefusesUnsafeDir(t *testing.T) {
	tmp := t.TempDir()
	taskFile := filepath.Join(tmp, "task.json")
	writeTaskRecord(taskFile, runIncarnation, runClaims(t, writeFile(t, tmp, "p", []byte("p"))))
	open := runDir(t)
	os.Chmod(open, 0o777)
	group := runDir(t)
	os.Chmod(group, 0o770)
	missing := filepath.Join(tmp, "absent")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"world-writable", []string{"--manifest-dir", open},
			"manifest directory " + open + " is world-writable (mode 0777); fix: chmod o-w " + open},
		{"group-writable", []string{"--manifest-dir", group},
			"is group-writable (mode 0770); fix: chmod g-w " + group + ", or accept it explicitly (agentid run --group-writable)"},
		{"missing", []string{"--manifest-dir", missing},
			"does not exist; fix: install -d -m 0750 -o root -g agentid " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"run", "--task-file", taskFile}, tt.args...), "--", "sleep", "30")
			code, _, stderr := runCLI(t, args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
		})
	}
	// --group-writable accepts 0770, and the env var sets the directory.
	t.Setenv("AGENTID_MANIFEST_DIR", group)
	cmd := launch(t, "run", "--group-writable", "--task-file", taskFile, "--", "sleep", "30")
	if _, err := os.Stat(filepath.Join(group, attestor.ManifestName(cmd.Process.Pid))); err != nil {
		t.Error(err)
	}
}

func TestRunUsage(t *testing.T) {
	tmp := t.TempDir()
	taskFile := filepath.Join(tmp, "task.json")
	claims := runClaims(t, writeFile(t, tmp, "p", []byte("p")))
	writeTaskRecord(taskFile, runIncarnation, claims)
	claimsOnly := writeFile(t, tmp, "claims-only.json", claims.AppendJSON(nil)) // a record before incarnations
	dir := runDir(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--task-file", taskFile}, 2, "no command"},
		{[]string{"--task-file", taskFile, "--agent", "x", "--", "true"}, 2, "--agent cannot be combined with --task-file"},
		{[]string{"--agent", "x", "--", "true"}, 2, "give --task-file, or"},
		{[]string{"--agent", "a", "--task", "t", "--model", "m", "--principal", "spiffe://x/y", "--deadline", "2030-01-01T00:00:00Z",
			"--prompt-sha256", "sha256:12", "--incarnation", runIncarnation, "--", "true"}, 1, "task record: svid: claims rejected: invalid field: prompt"},
		{[]string{"--agent", "a", "--task", "t", "--model", "m", "--principal", "spiffe://x/y", "--deadline", "tomorrow",
			"--prompt-sha256", "sha256:12", "--", "true"}, 1, "--deadline: parsing time"},
		{[]string{"--agent", "a", "--task", "t", "--model", "m", "--principal", "spiffe://x/y", "--deadline", "2030-01-01T00:00:00Z",
			"--prompt-sha256", "sha256:" + strings.Repeat("ab", 32), "--", "true"}, 2, "--incarnation is required"},
		{[]string{"--task-file", taskFile, "--incarnation", runIncarnation, "--", "true"}, 2, "--incarnation cannot be combined with --task-file"},
		{[]string{"--task-file", claimsOnly, "--", "true"}, 1, "claims without an incarnation"},
		{[]string{"--task-file", filepath.Join(tmp, "absent"), "--", "true"}, 1, "no such file"},
		{[]string{"--task-file", taskFile, "--", "no-such-command-agentid"}, 1, "executable file not found"},
		{[]string{"--gc", "--", "true"}, 2, "--gc takes no command"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, append([]string{"run", "--manifest-dir", dir}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("run %q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}

func TestRunGC(t *testing.T) {
	tmp := t.TempDir()
	dir := runDir(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	c := runClaims(t, writeFile(t, tmp, "p", []byte("p")))
	stale, err := attestor.WriteManifest(dir, attestor.Manifest{PID: dead.Process.Pid, StartTime: 1, UserNS: 1, MntNS: 1, Incarnation: runIncarnation, Claims: c})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := attestor.ReadStat("", os.Getpid())
	ns, _ := attestor.ReadNamespaces("", os.Getpid())
	live, err := attestor.WriteManifest(dir, attestor.Manifest{PID: self.PID, StartTime: self.StartTime, UserNS: ns.User, MntNS: ns.Mnt, Incarnation: runIncarnation, Claims: c})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "run", "--gc", "--manifest-dir", dir)
	if want := fmt.Sprintf("removed 1 stale manifest(s) from %s\n", dir); code != 0 || stdout != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("stale manifest kept")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("live manifest removed")
	}
}
