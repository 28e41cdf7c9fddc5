package attestor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
)

// testNow is the pinned clock of the tests; testClaims' deadline is an
// hour later.
var testNow = time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)

// testIncarnation is the incarnation of the test manifests.
const testIncarnation = "0123456789abcdef0123456789abcdef"

func testClaims() svid.Claims {
	return svid.Claims{
		V: svid.Version, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt:    svid.PromptDigest([]byte("You are a careful researcher.")),
		Scope:     []string{"kb:read", "web:search"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline:  testNow.Add(time.Hour),
	}
}

// wantSelectors: the task-scoped layout, then the v1 layout but its task
// selector.
var wantSelectors = []string{
	"task:T-42", "task:T-42:agent:researcher", "task:T-42:model:openai/gpt-4o",
	"task:T-42:prompt:" + svid.PromptDigest([]byte("You are a careful researcher.")),
	"task:T-42:scope:kb:read", "task:T-42:scope:web:search", "task:T-42:principal:spiffe://example.org/user/alice",
	"task:T-42:delegator:0:spiffe://example.org/agent/planner/task/T-41", "task:T-42:depth:1",
	"task:T-42:incarnation:" + testIncarnation,
	"agent:researcher", "model:openai/gpt-4o",
	"prompt:" + svid.PromptDigest([]byte("You are a careful researcher.")),
	"scope:kb:read", "scope:web:search", "principal:spiffe://example.org/user/alice",
	"delegator:0:spiffe://example.org/agent/planner/task/T-41", "depth:1",
}

// exePins are the executable pins of T-42 for digest sum, both layouts.
func exePins(sum string) []string {
	return []string{svid.ScopedExeSelector("T-42", sum), svid.ExeSelector(sum)}
}

// The test agents' uid and gid when the tests run as root: numeric ids
// without a passwd entry (setuid needs none), so that the agents can write
// neither the manifest directories nor the manifests.
const (
	testAgentUID = 61001
	testAgentGID = 61001
)

// agentCred is the credential test agents run with: testAgentUID and
// testAgentGID without supplementary groups when the tests run as root,
// nil (the test's own) otherwise.
func agentCred() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: testAgentUID, Gid: testAgentGID, Groups: []uint32{}}
}

// needRoot skips a test that switches to other uids.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs agents under distinct uids and gids (CI runs as root)")
	}
}

// withExe is sel followed by the executable pin of the program name (as
// the attestor emits it for a live process).
func withExe(t testing.TB, sel []string, name string) []string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ExecutableDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(sel), exePins(sum)...)
}

// startProcess starts name args in its own process group, as the test
// agent (see agentCred), and kills the group when the test ends.
func startProcess(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	return startAs(t, agentCred(), name, args...)
}

// startAs is startProcess with the given credential (nil: the test's).
func startAs(t testing.TB, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// startSleep starts `sleep 60` and returns its PID and start time.
func startSleep(t testing.TB) (int, uint64) {
	t.Helper()
	pid := startProcess(t, "sleep", "60").Process.Pid
	return pid, mustStat(t, pid).StartTime
}

func mustStat(t testing.TB, pid int) Stat {
	t.Helper()
	st, err := ReadStat("", pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// childOf polls until pid has a child and returns the first one.
func childOf(t testing.TB, pid int) int {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			child, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return child
		}
		last = string(b)
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
	t.Fatalf("pid %d has no child after 10s (%q)", pid, last)
	return 0
}

// waitExec polls until pid runs the executable named comm (after an exec).
func waitComm(t testing.TB, pid int, comm string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if st, err := ReadStat("", pid); err == nil && st.Comm == comm {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("pid %d does not run %s after 10s", pid, comm)
}

// writeFor writes a manifest of testClaims for pid and start.
func writeFor(t testing.TB, dir string, pid int, start uint64) string {
	t.Helper()
	return writeForIn(t, dir, "", pid, start)
}

// writeForIn is writeFor with pid's namespaces read under procRoot.
func writeForIn(t testing.TB, dir, procRoot string, pid int, start uint64) string {
	t.Helper()
	path, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: pid, StartTime: start, Claims: testClaims()}.in(t, procRoot, pid))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// in returns m with the namespaces of pid under procRoot, as a launcher
// records them; for a pid that names no process (a stale manifest), the
// test's own.
func (m Manifest) in(t testing.TB, procRoot string, pid int) Manifest {
	t.Helper()
	ns, err := ReadNamespaces(procRoot, pid)
	if errors.Is(err, os.ErrNotExist) {
		ns, err = ReadNamespaces("", os.Getpid())
	}
	if err != nil {
		t.Fatal(err)
	}
	m.UserNS, m.MntNS = ns.User, ns.Mnt
	return m
}

// recorder is a Logger that keeps its warnings.
type recorder struct {
	mu    sync.Mutex
	warns []string
}

func (r *recorder) Warn(msg string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warns = append(r.warns, fmt.Sprint(append([]any{msg}, args...)...))
}

func (r *recorder) Debug(string, ...any) {}

func (r *recorder) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.warns...)
}

// newTest returns an attestor on cfg with the pinned clock and a recorder.
// Not as root, the test agents run as the test's uid, which owns the
// manifest directories: allow_same_user then lets the other checks be
// tested.
func newTest(t testing.TB, cfg Config) (*Attestor, *recorder) {
	t.Helper()
	if os.Geteuid() != 0 {
		cfg.AllowSameUser = true
	}
	rec := &recorder{}
	a, err := New(cfg, WithLogger(rec), WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return a, rec
}

// manifestDir returns a fresh manifest directory with mode 0750.
func manifestDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tasks")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}
