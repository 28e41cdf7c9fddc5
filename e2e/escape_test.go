package e2e

import (
	"encoding/json"
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
)

// Throw-away ids of TestAttestEscape: two agent users and the group that
// may read (not write) the manifest directory.
const (
	attackerUID = 61101
	victimUID   = 61102
	pinnedUID   = 61103 // task P-1: one uid per task (docs/attestor.md)
	readersGID  = 61150
)

// TestAttestEscape is the attack of issue 11 on the real SPIRE, with the
// attestor in its secure configuration (no allow_same_user) and the
// deployment docs/attestor.md describes: a root launcher, the manifest
// directory 02750 root:<readers>, two tasks launched with `agentid run
// --user` as two different unprivileged uids in the readers group. The
// attacker, running as task I, reads the other task's manifest and record,
// tries to write, delete, rename and plant manifests, and re-launches
// itself with `agentid run --task-file <A's record>` (same PID). It gets
// nothing but its own identity, and task A keeps working.
func TestAttestEscape(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it launches agents as throw-away uids (CI runs as root)")
	}
	s := newStackWith(t, "\ninherit_depth = 1")
	// The agents reach the Workload API socket and the binaries through
	// the scratch folder; they may read the manifests (group), not write.
	// (SPIRE's umask 0027 keeps others out of the Workload API socket.)
	sock := s.agent.SocketPath
	for _, d := range []string{s.srv.Root, filepath.Dir(filepath.Dir(sock)), filepath.Dir(sock)} {
		chmodT(t, d, 0o711)
	}
	chmodT(t, sock, 0o777)
	if err := os.Chown(s.manifestDir, 0, readersGID); err != nil {
		t.Fatal(err)
	}
	chmodT(t, s.manifestDir, 0o2750) // setgid: manifests get the readers group, mode 0640
	shared := filepath.Join(s.srv.Root, "shared")
	out := filepath.Join(s.srv.Root, "out")
	for _, d := range []string{shared, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(out, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}

	common := []string{"--model", "openai/gpt-4o", "--prompt-sha256", digest, "--principal", "spiffe://example.org/user/alice", "--ttl", "1h"}
	recordA := share(t, shared, s.createTask("planner", "A-1", append(common, "--scope", "kb:write", "--scope", "tickets:write")...))
	recordI := share(t, shared, s.createTask("planner", "I-1", append(common, "--scope", "kb:read")...))
	idA, idI := "spiffe://example.org/agent/planner/task/A-1", "spiffe://example.org/agent/planner/task/I-1"

	as := func(uid int) []string {
		return []string{"--user", fmt.Sprint(uid), "--group", fmt.Sprint(uid), "--groups", fmt.Sprint(readersGID)}
	}
	// The victim: task A, a long-running agent.
	victim := s.launchAs(t, append(append([]string{"run", "--task-file", recordA}, as(victimUID)...), "--", "sleep", "300")...)
	victimManifest := filepath.Join(s.manifestDir, attestor.ManifestName(victim))
	before := mustRead(t, victimManifest)

	// The attacker: task I, a shell whose tools inherit its identity.
	script := `
inspect() { "$AGENTID" svid inspect --json --socket "$SOCK"; }
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name: succeeded"; else echo "$name: refused"; fi; }
for i in $(seq 1 100); do inspect > "$OUT/own.json" 2>"$OUT/own.err" && break; sleep 0.2; done
try read-victim-manifest cp "$DIR/$VICTIM.json" "$OUT/stolen.json"
try overwrite-victim-manifest sh -c 'echo {} > "$DIR/$VICTIM.json"'
try delete-victim-manifest rm -f "$DIR/$VICTIM.json"
try rename-victim-manifest mv "$DIR/$VICTIM.json" "$DIR/$$.json"
try plant-stolen-manifest cp "$OUT/stolen.json" "$DIR/$$.json"
try delete-own-manifest rm -f "$DIR/$$.json"
try chmod-directory chmod 0777 "$DIR"
try relaunch-child "$AGENTID" run --task-file "$RECORD_A" --manifest-dir "$DIR" -- true
inspect > "$OUT/after.json" 2>&1
exec "$AGENTID" run --task-file "$RECORD_A" --manifest-dir "$DIR" -- "$AGENTID" svid inspect --json --socket "$SOCK"
`
	cmd := exec.Command(s.agentid, append(append([]string{"run", "--task-file", recordI, "--manifest-dir", s.manifestDir}, as(attackerUID)...),
		"--", "sh", "-c", script)...)
	cmd.Env = append(os.Environ(), "AGENTID="+s.agentid, "SOCK="+s.agent.SocketPath, "OUT="+out, "DIR="+s.manifestDir,
		"VICTIM="+fmt.Sprint(victim), "RECORD_A="+recordA)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("attacker:\n%s", stdout.String())
	if b, _ := os.ReadFile(filepath.Join(out, "own.err")); len(b) > 0 {
		t.Logf("attacker's first identity fetch:\n%s", b)
	}

	// Its own identity, before and after the attempts.
	for _, f := range []string{"own.json", "after.json"} {
		if got := inspectedIDs(t, mustRead(t, filepath.Join(out, f))); !slices.Equal(got, []string{idI}) {
			t.Errorf("attacker's %s: identities %q, want only %s", f, got, idI)
		}
	}
	// It could read A's manifest (group-readable) but do nothing with it.
	for _, line := range []string{
		"read-victim-manifest: succeeded",
		"overwrite-victim-manifest: refused", "delete-victim-manifest: refused", "rename-victim-manifest: refused",
		"plant-stolen-manifest: refused", "delete-own-manifest: refused", "chmod-directory: refused", "relaunch-child: refused",
	} {
		if !strings.Contains(stdout.String(), line) {
			t.Errorf("attacker output lacks %q", line)
		}
	}
	// The re-launch under A's record (same PID) fails before any exec.
	if err == nil || !strings.Contains(stderr.String(), "permission denied") || strings.Contains(stdout.String(), idA) {
		t.Errorf("re-launch as A: %v; stdout %s\nstderr %s", err, stdout.String(), stderr.String())
	}

	// Task A keeps working: its manifest is untouched and attests, and a
	// fresh launch of A gets A's SVID from SPIRE.
	if after := mustRead(t, victimManifest); string(after) != string(before) {
		t.Errorf("victim manifest changed:\n%s\n%s", before, after)
	}
	a, err := attestor.New(attestor.Config{ManifestDir: s.manifestDir})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := a.Resolve(victim); err != nil || res.Refused != nil || !slices.Contains(res.Selectors, "task:A-1") {
		t.Errorf("victim attestation: %+v, %v", res, err)
	}
	ids := s.inspectIDsAs(t, append(append([]string{"run", "--task-file", recordA}, as(victimUID)...), "--",
		s.agentid, "svid", "inspect", "--json", "--socket", s.agent.SocketPath)...)
	if !slices.Equal(ids, []string{idA}) {
		t.Errorf("fresh launch of A: %q", ids)
	}

	// A task pinned to the agentid binary: the binary gets it, a shell
	// (whose tools would inherit) under the same record gets nothing.
	recordP := share(t, shared, s.createTask("planner", "P-1", append(common, "--scope", "kb:read", "--exe", s.agentid)...))
	pinned := s.inspectIDsAs(t, append(append([]string{"run", "--task-file", recordP}, as(pinnedUID)...), "--",
		s.agentid, "svid", "inspect", "--json", "--socket", s.agent.SocketPath)...)
	if !slices.Equal(pinned, []string{"spiffe://example.org/agent/planner/task/P-1"}) {
		t.Errorf("pinned task, its binary: %q", pinned)
	}
	_, err = s.run(append(append([]string{"run", "--task-file", recordP, "--manifest-dir", s.manifestDir}, as(pinnedUID)...), "--",
		"sh", "-c", `exec "$0" svid inspect --socket "$1" & wait $!`, s.agentid, s.agent.SocketPath)...)
	if err == nil || !strings.Contains(err.Error(), "no identity issued") {
		t.Errorf("pinned task under another binary: %v", err)
	}

	// Review 19: the agent leaves the namespaces it was launched in (a
	// user namespace of its own, where it could mount an overlay and
	// change its executable's bytes behind /proc/<pid>/exe), keeping its
	// PID and without capabilities, then asks for its SVID: nothing, and
	// the SPIRE agent logs why.
	if _, err := exec.LookPath("setpriv"); err == nil {
		_, err = s.run(append(append([]string{"run", "--task-file", recordP, "--manifest-dir", s.manifestDir}, as(pinnedUID)...), "--",
			"unshare", "-Urm", "setpriv", "--securebits=+noroot,+noroot_locked", "--inh-caps=-all", "--bounding-set=-all",
			s.agentid, "svid", "inspect", "--socket", s.agent.SocketPath)...)
		if err == nil || !strings.Contains(err.Error(), "no identity issued") {
			t.Errorf("pinned task in a user namespace of its own: %v", err)
		}
		if log := mustRead(t, s.agent.LogPath); !strings.Contains(string(log), "namespace changed since launch") {
			t.Errorf("SPIRE agent log lacks the namespace refusal")
		}
	}

	// Without --user the agent runs as the launcher (root): the attestor
	// refuses it and SPIRE issues nothing.
	_, err = s.run("run", "--task-file", recordI, "--manifest-dir", s.manifestDir, "--", s.agentid, "svid", "inspect", "--socket", s.agent.SocketPath)
	if err == nil || !strings.Contains(err.Error(), "no identity issued") {
		t.Errorf("agent as root: %v", err)
	}
	log := mustRead(t, s.agent.LogPath)
	if !strings.Contains(string(log), "agent process can write the manifest directory") {
		t.Errorf("SPIRE agent log lacks the refusal's reason")
	}
}

// launchAs starts `agentid args…` (an `agentid run` of a long-running
// agent) and returns its PID once it exec'd; it is killed when the test
// ends.
func (s *stack) launchAs(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command(s.agentid, args...)
	cmd.Env = append(os.Environ(), "AGENTID_MANIFEST_DIR="+s.manifestDir)
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
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		st, err := attestor.ReadStat("", cmd.Process.Pid)
		if err != nil || st.State == 'Z' {
			t.Fatalf("launcher exited: %v\n%s", err, stderr.String())
		}
		if st.Comm != filepath.Base(s.agentid)[:min(15, len(filepath.Base(s.agentid)))] {
			return cmd.Process.Pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no exec within 20s: %s", stderr.String())
	return 0
}

// inspectIDsAs runs `agentid args…` (which execs `agentid svid inspect
// --json`) until it prints an identity, and returns the SPIFFE IDs.
func (s *stack) inspectIDsAs(t *testing.T, args ...string) []string {
	t.Helper()
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		out, err := s.run(args...)
		if err == nil {
			return inspectedIDs(t, []byte(out))
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no identity within 30s: %v", lastErr)
	return nil
}

// inspectedIDs returns the SPIFFE IDs of `agentid svid inspect --json`
// output (one report or a list).
func inspectedIDs(t *testing.T, out []byte) []string {
	t.Helper()
	var reps []report
	if err := json.Unmarshal(out, &reps); err != nil {
		var one report
		if err := json.Unmarshal(out, &one); err != nil {
			t.Fatalf("inspect output %q: %v", out, err)
		}
		reps = []report{one}
	}
	var ids []string
	for _, r := range reps {
		if !slices.Contains(ids, r.SPIFFEID) {
			ids = append(ids, r.SPIFFEID)
		}
	}
	return ids
}

// share copies a task record into dir, readable by the agents.
func share(t *testing.T, dir, record string) string {
	t.Helper()
	if _, err := readRecord(t, record); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(record))
	if err := os.WriteFile(path, mustRead(t, record), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func chmodT(t *testing.T, path string, mode uint32) {
	t.Helper()
	if err := syscall.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
