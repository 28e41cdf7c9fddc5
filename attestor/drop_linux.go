package attestor

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	privilegesFixHint    = "; fix: run the launcher as root, or with CAP_SETUID and CAP_SETGID (systemd: AmbientCapabilities=CAP_SETUID CAP_SETGID)"
	threadSelfStatus     = "/proc/thread-self/status"
)

// DropPrivileges makes the calling thread, and for the uid and gids the
// whole process, run as c: it sets the supplementary groups, then the
// gid, then the uid (Go's syscall.Setgroups, Setgid and Setuid apply to every thread
// since Go 1.16), then clears the ambient, inheritable, permitted and
// effective capabilities and sets no_new_privs on the calling thread, which
// must be locked (runtime.LockOSThread) and is the one to exec. It checks
// the result in /proc/thread-self/status: real, effective, saved and
// filesystem ids, the groups, and CapInh, CapPrm, CapEff and CapAmb all
// zero.
//
// Clearing the capabilities matters for a launcher that is not root but
// holds CAP_SETUID and CAP_SETGID (docs/attestor.md, variant B): a change
// between two non-zero uids keeps the permitted and effective sets, and
// no_new_privs lets an exec keep what the thread holds, so an agent that
// execs a binary with the cap_setuid file capability would become root.
// With the permitted set empty and no_new_privs, an exec gains no
// capability at all (the kernel intersects the file's with the permitted
// set). The bounding set is left as it is: emptied, it makes the exec of
// binaries that carry file capabilities, such as ping, fail with EPERM.
func DropPrivileges(c Credential) error {
	groups := make([]int, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("attestor: launch: setgroups %v: %w%s", c.Groups, err, privilegesFixHint)
	}
	if err := syscall.Setgid(int(c.GID)); err != nil {
		return fmt.Errorf("attestor: launch: setgid %d: %w%s", c.GID, err, privilegesFixHint)
	}
	if err := syscall.Setuid(int(c.UID)); err != nil {
		return fmt.Errorf("attestor: launch: setuid %d: %w%s", c.UID, err, privilegesFixHint)
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); e != 0 && e != syscall.EINVAL {
		return fmt.Errorf("attestor: launch: clear ambient capabilities: %w", e)
	}
	// Only this thread execs; capset(2) with pid 0 changes it alone.
	var none [2]unix.CapUserData // version 3: two 32-bit halves
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
		return fmt.Errorf("attestor: launch: clear capabilities: %w", err)
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("attestor: launch: PR_SET_NO_NEW_PRIVS: %w", e)
	}
	var buf [4096]byte
	n, err := readSmall(threadSelfStatus, buf[:])
	if err != nil {
		return fmt.Errorf("attestor: launch: checking the dropped credentials: %w", err)
	}
	got, err := ParseStatus(buf[:n])
	if err != nil {
		return fmt.Errorf("attestor: launch: checking the dropped credentials: %w", err)
	}
	want := UserCreds(c.UID, c.GID, c.Groups)
	if got.UIDs != want.UIDs || got.GIDs != want.GIDs || !slices.Equal(sorted(got.Groups), sorted(c.Groups)) {
		return fmt.Errorf("attestor: launch: credentials after the drop are uids %v gids %v groups %v, want %v %v %v",
			got.UIDs, got.GIDs, got.Groups, want.UIDs, want.GIDs, c.Groups)
	}
	if held := heldCaps(buf[:n]); held != "" {
		return fmt.Errorf("attestor: launch: capabilities left after the drop: %s", held)
	}
	return nil
}

// heldCaps lists the non-empty capability sets among CapInh, CapPrm,
// CapEff and CapAmb of a /proc status file, "" when all are empty (or
// unreadable: then the parse of the ids has failed already).
func heldCaps(status []byte) string {
	var held []string
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch k := string(key); k {
		case "CapInh", "CapPrm", "CapEff", "CapAmb":
			set, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
			if err != nil || set != 0 {
				held = append(held, k+" "+string(bytes.TrimSpace(val)))
			}
		}
	}
	return strings.Join(held, ", ")
}

func sorted(s []uint32) []uint32 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
