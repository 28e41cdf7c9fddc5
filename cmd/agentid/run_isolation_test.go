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
	"unsafe"
)

// TestRunClosesInheritedFDs: `agentid run --user` drops the agent to an
// unprivileged uid; a descriptor the launcher inherited without
// close-on-exec (from the orchestrator, a shell redirection, a systemd
// socket) must not reach the agent, which could then read or write what
// its uid cannot open: here a root-only file on fd 3. sudo and su close
// them (closefrom); so does the launcher (attestor.IsolateExec).
func TestRunClosesInheritedFDs(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	secret := writeFile(t, tmp, "root-only", []byte("operator token\n"))
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := filepath.Join(tmp, "task.json")
	if err := writeTaskRecord(rec, runIncarnation, runClaims(t, writeFile(t, tmp, "p", []byte("p")))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunHelperProcess$", "--", "run", "--manifest-dir", runDir(t),
		"--task-file", rec, "--user", "61001", "--group", "61001", "--",
		"sh", "-c", "id -u; cat <&3; ls -l /proc/$$/fd/")
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	cmd.ExtraFiles = []*os.File{f} // fd 3 in the launcher, not close-on-exec
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "operator token") {
		t.Errorf("the agent (uid 61001) read a root-only file through a descriptor the launcher passed on:\n%s", out)
	}
}

// TestRunDetachesFromLaunchersTTY: launched from a terminal (as
// docs/attestor.md shows: `agentid run --user agent-researcher …` from a
// root shell), an agent that kept the launcher's controlling terminal
// could push input into it with TIOCSTI, which the root shell that ran
// `agentid run` reads and runs once the agent exits (the
// su/runuser/bubblewrap TIOCSTI escape; sudo answers with use_pty).
//
// From a shell (the launcher is neither session nor process-group
// leader), the launcher gives up the terminal before the exec: the
// agent's TIOCSTI fails with EPERM, it cannot take the terminal back
// (TIOCSCTTY), and nothing is queued. A launcher that is itself the
// session leader of its terminal (a login shell's position: `exec
// agentid run`, `setsid -c`) cannot keep the agent from taking the
// terminal back once it has given it up, since the agent stays session
// leader: it refuses to launch, saying how to start it instead (`setsid
// -w agentid run …`, the third case).
func TestRunDetachesFromLaunchersTTY(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name        string
		via         []string // what starts the launcher in the terminal's session
		wantRefusal string
	}{
		// sh is the session leader; "; exit" keeps it from exec'ing the launcher.
		{name: "shell job", via: []string{"/bin/sh", "-c", `"$0" "$@"; exit $?`}},
		{name: "session leader", wantRefusal: "is the session leader of its controlling terminal"},
		// The fix the refusal gives: a new session without a terminal.
		{name: "setsid -w", via: []string{"setsid", "-w"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ptmx, tty := openPTY(t)
			defer ptmx.Close()
			defer tty.Close()
			tmp := t.TempDir()
			rec := filepath.Join(tmp, "task.json")
			if err := writeTaskRecord(rec, runIncarnation, runClaims(t, writeFile(t, tmp, "p", []byte("p")))); err != nil {
				t.Fatal(err)
			}
			args := []string{"-test.run=^TestRunHelperProcess$", "--", "run", "--manifest-dir", runDir(t),
				"--task-file", rec, "--user", "61001", "--group", "61001", "--",
				"/usr/bin/perl", "-e", `ioctl(STDIN, 0x540E, 0) and print STDERR "took the terminal back\n"; ` +
					`ioctl(STDIN, 0x5412, $_) or die "TIOCSTI: $!\n" for split //, "echo pwned\n"; print STDERR "uid $<\n"`}
			argv := append(append(slices.Clone(tc.via), os.Args[0]), args...)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
			var stderr strings.Builder
			cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stderr, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0} // a login session
			err := cmd.Run()
			t.Logf("agent: %v: %s", err, stderr.String())
			if k, queued := pending(t, tty); strings.Contains(queued, "echo pwned") {
				t.Errorf("the agent (%s) queued %q (%d bytes) as input of the launcher's terminal", strings.TrimSpace(stderr.String()), queued, k)
			}
			switch out := stderr.String(); {
			case strings.Contains(out, "took the terminal back"):
				t.Errorf("the agent made the launcher's terminal its controlling terminal again: %s", out)
			case tc.wantRefusal != "" && (err == nil || !strings.Contains(out, tc.wantRefusal) || !strings.Contains(out, "setsid -w")):
				t.Errorf("launcher: %v: %s\nwant a refusal containing %q and the fix", err, out, tc.wantRefusal)
			case tc.wantRefusal == "" && !strings.Contains(out, "TIOCSTI: Operation not permitted"):
				t.Errorf("the agent's TIOCSTI did not fail with EPERM: %s", out)
			}
		})
	}
}

// openPTY opens a new pseudo-terminal pair, the terminal side without
// making it the test's controlling terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skip(err)
	}
	var n uint32
	if err := ioctl(ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); err != nil {
		t.Fatal(err)
	}
	var unlock int32
	if err := ioctl(ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ptmx, tty
}

// pending is what the next reader of the terminal gets: whatever is
// queued now (TIOCINQ first, so that an empty queue does not block).
func pending(t *testing.T, tty *os.File) (int, string) {
	t.Helper()
	var queued int32
	if err := ioctl(tty.Fd(), syscall.TIOCINQ, uintptr(unsafe.Pointer(&queued))); err != nil {
		t.Fatal(err)
	}
	if queued == 0 {
		return 0, ""
	}
	buf := make([]byte, 256)
	k, _ := tty.Read(buf)
	return k, string(buf[:k])
}

func ioctl(fd, req, arg uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg); e != 0 {
		return e
	}
	return nil
}

// TestRunVariantBDropsCapabilities: docs/attestor.md variant B runs the
// launcher as an unprivileged uid with CAP_SETUID and CAP_SETGID (systemd
// AmbientCapabilities). Changing uid from a non-zero uid keeps the
// permitted and effective capabilities (only a change away from uid 0
// clears them), and no_new_privs lets an exec keep what the thread already
// holds: unless the launcher clears them, an agent that execs a binary
// carrying the cap_setuid file capability (for instance newuidmap on
// distributions that ship it with file capabilities instead of setuid
// root) gets CAP_SETUID and becomes root — then it writes any manifest.
// The control is the same agent from a root launcher (variant A).
func TestRunVariantBDropsCapabilities(t *testing.T) {
	needRoot(t)
	base, err := os.MkdirTemp("/tmp", "aicap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	const launcherUID = 61050
	dir := filepath.Join(base, "tasks") // variant B: 0770 root:<launchers>
	if err := os.Mkdir(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, 0, launcherUID)
	os.Chmod(dir, 0o770)
	launcher := filepath.Join(base, "agentid.test")
	copyFile(t, os.Args[0], launcher)
	agent := filepath.Join(base, "tool")
	copyFile(t, "/usr/bin/perl", agent)
	if out, err := exec.Command("setcap", "cap_setuid+ep", agent).CombinedOutput(); err != nil {
		t.Skipf("setcap: %v %s", err, out)
	}
	rec := filepath.Join(base, "task.json")
	if err := writeTaskRecord(rec, runIncarnation, runClaims(t, writeFile(t, base, "p", []byte("p")))); err != nil {
		t.Fatal(err)
	}
	os.Chmod(rec, 0o644)
	cmd := exec.Command(launcher, "-test.run=^TestRunHelperProcess$", "--", "run", "--manifest-dir", dir, "--group-writable",
		"--task-file", rec, "--user", "61001", "--group", "61001", "--", agent, "-e",
		`print "before: uid $< euid $>\n"; $< = $> = 0; print "after: uid $< euid $>\n"`)
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: launcherUID, Gid: launcherUID, Groups: []uint32{}},
		AmbientCaps: []uintptr{6, 7}, // CAP_SETGID, CAP_SETUID
	}
	out, err := cmd.CombinedOutput()
	t.Logf("variant B: %v\n%s", err, out)
	// Control: the same agent from a root launcher (variant A) stays 61001.
	dirA := filepath.Join(base, "tasks-a")
	if err := os.Mkdir(dirA, 0o750); err != nil {
		t.Fatal(err)
	}
	ctl := exec.Command(launcher, "-test.run=^TestRunHelperProcess$", "--", "run", "--manifest-dir", dirA,
		"--task-file", rec, "--user", "61001", "--group", "61001", "--", agent, "-e",
		`$< = $> = 0; print "variant A after: uid $< euid $>\n"`)
	ctl.Env = cmd.Env
	outA, errA := ctl.CombinedOutput()
	t.Logf("variant A: %v\n%s", errA, outA)
	if !strings.Contains(string(outA), "variant A after: uid 61001 euid 61001") {
		t.Fatalf("control: %s", outA)
	}
	if strings.Contains(string(out), "after: uid 0 euid 0") {
		t.Errorf("the agent launched as uid 61001 by a variant-B launcher became root through CAP_SETUID kept across the exec:\n%s", out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(to, 0o755)
}
