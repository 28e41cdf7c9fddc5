package attestor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// overlaySetup is the shell that makes an overlay in dir, whose upper
// layer (the agent's) holds a copy of sleep as prog, mounted on dir/merged.
func overlaySetup(dir, sleepBin string) string {
	return "cd " + dir + " && mkdir lower upper work merged && cp " + sleepBin + " upper/prog && " +
		"mount -t overlay overlay -o lowerdir=" + dir + "/lower,upperdir=" + dir + "/upper,workdir=" + dir + "/work,userxattr " + dir + "/merged"
}

// overlayDir returns a directory of the test agent's for overlaySetup.
func overlayDir(t *testing.T) string {
	t.Helper()
	for _, b := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skip(b + " not installed")
		}
	}
	dir, err := os.MkdirTemp("/tmp", "aiov")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.Chown(dir, testAgentUID, testAgentGID)
	return dir
}

// startAgentCmd starts name args as the test agent with no_new_privs and
// kills it when the test ends.
func startAgentCmd(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command("setpriv", append([]string{"--no-new-privs"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: agentCred(), Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	return cmd.Process.Pid
}

// waitExeSuffix polls until /proc/<pid>/exe ends in suffix; it skips the
// test when that does not happen (no unprivileged user namespaces with
// overlayfs here).
func waitExeSuffix(t *testing.T, pid int, suffix string) {
	t.Helper()
	exe := filepath.Join("/proc", strconv.Itoa(pid), "exe")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if l, _ := os.Readlink(exe); strings.HasSuffix(l, suffix) {
			return
		}
		if time.Now().After(deadline) {
			t.Skip("no unprivileged user namespace with overlayfs here")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rewriteUpper makes the agent write /bin/true over the upper layer's
// real file of prog, as the agent can: overlayfs denies writes to the
// running file through the overlay, not to the file under it.
func rewriteUpper(t *testing.T, dir, trueBin string) {
	t.Helper()
	w := exec.Command("sh", "-c", "cat "+trueBin+" > "+dir+"/upper/prog")
	w.SysProcAttr = &syscall.SysProcAttr{Credential: agentCred()}
	if out, err := w.CombinedOutput(); err != nil {
		t.Logf("rewrite refused: %v %s", err, out) // then nothing changes: the checks still hold
	}
}

// launchManifest writes pid's manifest with the namespaces it was
// launched in: the test's own (the agent process made its own later).
func launchManifest(t *testing.T, pid int) string {
	t.Helper()
	mdir := manifestDir(t)
	m := Manifest{Incarnation: testIncarnation, PID: pid, StartTime: mustStat(t, pid).StartTime, Claims: testClaims()}.in(t, "", os.Getpid())
	if _, err := WriteManifest(mdir, m); err != nil {
		t.Fatal(err)
	}
	return mdir
}

// TestProcessExeDigestOverlayRewrite (review 19 #4): the exe: pin assumes
// that the file behind /proc/<pid>/exe cannot change while the process
// runs (ETXTBSY). An unprivileged agent (no capabilities, no_new_privs)
// can make its own user and mount namespace, mount an overlay whose upper
// layer it owns, exec a binary from it — keeping its PID, start time and
// manifest — and then rewrite the upper layer's real file, which the
// kernel does not deny-write: the attestor would then hash bytes the
// process never exec'd. Here the process exec'd sleep; the digest the
// attestor computes for it must not be /bin/true's, and Attest refuses
// the manifest: the process left the namespaces it was launched in.
func TestProcessExeDigestOverlayRewrite(t *testing.T) {
	needRoot(t)
	dir := overlayDir(t)
	sleepBin, _ := exec.LookPath("sleep")
	trueBin, _ := exec.LookPath("true")
	script := overlaySetup(dir, sleepBin) + " && " +
		"exec setpriv --securebits=+noroot,+noroot_locked --inh-caps=-all --bounding-set=-all " + dir + "/merged/prog 30"
	pid := startAgentCmd(t, "unshare", "-Urm", "sh", "-c", script)
	waitExeSuffix(t, pid, "/merged/prog")
	sleepSum, _ := ExecutableDigest(sleepBin)
	trueSum, _ := ExecutableDigest(trueBin)
	exe := filepath.Join("/proc", strconv.Itoa(pid), "exe")
	if before, err := NewDigestCache(0).FileDigest(context.Background(), exe, 0); err != nil || before != sleepSum {
		t.Fatalf("file behind %s before the rewrite: %s, %v; want sleep's %s", exe, before, err, sleepSum)
	}
	cache := NewDigestCache(0)
	if d, err := cache.ProcessExeDigest(context.Background(), "", pid, 0); err == nil || !strings.Contains(err.Error(), "which uid 61001 (its own) created") {
		t.Errorf("ProcessExeDigest of an executable on the agent's own mount: %s, %v; want a refusal naming the user namespace", d, err)
	}
	rewriteUpper(t, dir, trueBin)
	after, err := cache.ProcessExeDigest(context.Background(), "", pid, 0)
	if err == nil && after == trueSum {
		t.Errorf("pid %d exec'd sleep (%s…), but the attestor hashes its executable as /bin/true's %s…: an agent gets the exe: pins of a binary it does not run",
			pid, sleepSum[:12], after[:12])
	}
	// The same through Attest, with the process's manifest: no selectors,
	// and the reason names the user namespace.
	a, rec := newTest(t, Config{ManifestDir: launchManifest(t, pid)})
	if sel, err := a.Attest(pid); err != nil || sel != nil {
		t.Errorf("Attest(pid %d, exec'd sleep, in a user namespace of its own) = %q, %v; want no selectors", pid, sel, err)
	}
	if w := rec.warnings(); len(w) != 1 || !strings.Contains(w[0], "namespace changed since launch") || !strings.Contains(w[0], "is in user namespace") {
		t.Errorf("warnings %q, want one naming the user namespace", w)
	}
	res, _ := a.Resolve(pid)
	if !errors.Is(res.Refused, &ManifestError{Reason: ReasonNamespace}) {
		t.Errorf("Resolve: refused %v, want ReasonNamespace", res.Refused)
	}
}

// TestProcessExeDigestForeignMountRewrite: the same rewrite without
// leaving its namespaces: a helper of the agent's uid makes the user and
// mount namespace and the overlay, and the agent, still in the namespaces
// it was launched in, execs the overlay's binary through the helper's
// /proc/<pid>/root. Its executable is then on a mount outside its mount
// namespace: ProcessExeDigest refuses it, and Attest emits the task's
// selectors without executable pins (and with require_exe_sha256 refuses
// the manifest).
func TestProcessExeDigestForeignMountRewrite(t *testing.T) {
	needRoot(t)
	dir := overlayDir(t)
	sleepBin, _ := exec.LookPath("sleep")
	trueBin, _ := exec.LookPath("true")
	helper := startAgentCmd(t, "unshare", "-Urm", "sh", "-c", overlaySetup(dir, sleepBin)+" && exec "+sleepBin+" 30")
	prog := filepath.Join("/proc", strconv.Itoa(helper), "root", dir, "merged", "prog")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(prog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Skip("no unprivileged user namespace with overlayfs here")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := startAgentCmd(t, prog, "30")
	waitExeSuffix(t, pid, "/merged/prog")
	if ns, err := ReadNamespaces("", pid); err != nil || ns != mustNS(t, os.Getpid()) {
		t.Fatalf("agent namespaces %+v, %v; want the test's", ns, err)
	}
	trueSum, _ := ExecutableDigest(trueBin)
	cache := NewDigestCache(0)
	if d, err := cache.ProcessExeDigest(context.Background(), "", pid, 0); err == nil || !strings.Contains(err.Error(), "not in its mount namespace") {
		t.Errorf("ProcessExeDigest of an executable on another namespace's mount: %s, %v; want a refusal", d, err)
	}
	rewriteUpper(t, dir, trueBin)
	if after, err := cache.ProcessExeDigest(context.Background(), "", pid, 0); err == nil && after == trueSum {
		t.Errorf("pid %d exec'd sleep, but the attestor hashes its executable as /bin/true's", pid)
	}
	mdir := launchManifest(t, pid)
	a, _ := newTest(t, Config{ManifestDir: mdir})
	if sel, err := a.Attest(pid); err != nil || !slices.Equal(sel, wantSelectors) {
		t.Errorf("Attest = %q, %v; want the task's selectors without executable pins", sel, err)
	}
	a, _ = newTest(t, Config{ManifestDir: mdir, RequireExeSHA256: true})
	if res, err := a.Resolve(pid); err != nil || !errors.Is(res.Refused, &ManifestError{Reason: ReasonExeMismatch}) {
		t.Errorf("require_exe_sha256: refused %v, %v; want ReasonExeMismatch", res.Refused, err)
	}
}

// TestAttestChildInOwnUserNamespace: no false refusal for an agent whose
// tool sandboxes itself in a user and mount namespace of its own (a
// child, as bubblewrap does): the agent keeps its selectors and
// executable pins, and the child inherits them (inherit_depth 1), the
// checks being the manifest holder's.
func TestAttestChildInOwnUserNamespace(t *testing.T) {
	needRoot(t)
	for _, b := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skip(b + " not installed")
		}
	}
	probe := exec.Command("unshare", "-Urm", "true")
	probe.SysProcAttr = &syscall.SysProcAttr{Credential: agentCred()}
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("no unprivileged user namespaces here: %v %s", err, out)
	}
	sleepBin, _ := exec.LookPath("sleep")
	// The child drops the capabilities it holds in its namespace (as
	// bubblewrap does): with them, the forger check refuses it
	// (CouldForge reads CapEff without telling namespaces apart).
	sandboxed := "unshare -Urm setpriv --securebits=+noroot,+noroot_locked --inh-caps=-all --bounding-set=-all " + sleepBin + " 30"
	agent := startAs(t, agentCred(), "sh", "-c", sandboxed+" & exec "+sleepBin+" 30").Process.Pid
	waitComm(t, agent, "sleep")
	child := childOf(t, agent)
	waitComm(t, child, "sleep")
	if ns, err := ReadNamespaces("", child); err != nil || ns.User == mustNS(t, agent).User {
		t.Skipf("the child is not in a user namespace of its own (%+v, %v): no unprivileged user namespaces here", ns, err)
	}
	dir := manifestDir(t)
	writeFor(t, dir, agent, mustStat(t, agent).StartTime)
	a, rec := newTest(t, Config{ManifestDir: dir, InheritDepth: 1})
	want := withExe(t, wantSelectors, "sleep")
	for _, pid := range []int{agent, child} {
		if sel, err := a.Attest(pid); err != nil || !slices.Equal(sel, want) {
			t.Errorf("Attest(%d) = %q, %v; want the task's selectors and sleep's pins (warnings %q)", pid, sel, err, rec.warnings())
		}
	}
}

func mustNS(t testing.TB, pid int) Namespaces {
	t.Helper()
	ns, err := ReadNamespaces("", pid)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
