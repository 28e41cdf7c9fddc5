package attestor

import (
	"fmt"
	"slices"
	"syscall"
)

const (
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	privilegesFixHint    = "; fix: run the launcher as root, or with CAP_SETUID and CAP_SETGID (systemd: AmbientCapabilities=CAP_SETUID CAP_SETGID)"
	threadSelfStatus     = "/proc/thread-self/status"
)

// DropPrivileges makes the calling thread, and for the uid and gids the
// whole process, run as c: supplementary groups, then gid, then uid (Go's
// syscall.Setgroups, Setgid and Setuid apply to every thread since Go
// 1.16), then it clears the ambient capabilities and sets no_new_privs on
// the calling thread, which must be locked (runtime.LockOSThread) and is
// the one to exec. It checks the result in /proc/thread-self/status: real,
// effective, saved and filesystem ids and the groups.
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
	return nil
}

func sorted(s []uint32) []uint32 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
