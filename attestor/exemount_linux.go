package attestor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// checkExeMount refuses the executable of pid, open as fd, when the
// process could change its bytes while it runs. Linux denies writes to a
// running executable (ETXTBSY), but not to the real file under an overlay
// (or another stacking file system) that an unprivileged user mounted in
// a user namespace of its own: the process then runs one content and
// /proc/<pid>/exe reads another (review 19). So the executable's mount
// must be
//
//   - in the process's own mount namespace (one exec'd through another
//     namespace's /proc/<pid>/root/... is not), and
//   - in a mount namespace none of whose owning user namespaces, up to
//     the attestor's, was created by one of the process's uids (an
//     unprivileged agent can mount only in those).
//
// Containers are not affected: their namespaces are created by root (or
// by the user running a rootless engine, whose uid the agent inside does
// not run as).
func (c *DigestCache) checkExeMount(fd int, procRoot string, pid int) error {
	procRoot = procRootOr(procRoot)
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	nsPath := filepath.Join(dir, "ns", "mnt")
	nsfd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("attestor: pid %d: %w", pid, &os.PathError{Op: "open", Path: nsPath, Err: err})
	}
	defer unix.Close(nsfd)
	var nsSt unix.Stat_t
	if err := unix.Fstat(nsfd, &nsSt); err != nil {
		return fmt.Errorf("attestor: pid %d: %w", pid, &os.PathError{Op: "fstat", Path: nsPath, Err: err})
	}
	mnt, err := fdMountID(fd)
	if err != nil {
		return err
	}
	// A mount never moves to another namespace, and a unique mount ID
	// (Linux 6.8) is never reused: that one is known to be in this
	// namespace spares reading mountinfo, the bulk of an attestation's
	// cost. Without unique IDs (older kernels) every call reads it.
	key, cacheable := mountKey{}, false
	if u, ok := fdUniqueMountID(fd); ok {
		key, cacheable = mountKey{ns: nsSt.Ino, mnt: u}, true
	}
	if !cacheable || !c.knownMount(key) {
		if ok, err := hasMount(filepath.Join(dir, "mountinfo"), mnt); err != nil {
			return fmt.Errorf("attestor: pid %d: %w", pid, err)
		} else if !ok {
			return fmt.Errorf("attestor: pid %d runs an executable on mount %d, which is not in its mount namespace (exec'd through another process's /proc/<pid>/root): its bytes may not be what it runs", pid, mnt)
		}
		if cacheable {
			c.addMount(key)
		}
	}
	return checkMountNSOwners(nsfd, pid, func() ([]uint32, error) {
		c, err := ReadCreds(procRoot, pid)
		return c.UIDs[:], err
	})
}

// mountKey is a mount (unique ID) seen in a mount namespace (inode).
type mountKey struct{ ns, mnt uint64 }

func (c *DigestCache) knownMount(k mountKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.mounts[k]
	return ok
}

func (c *DigestCache) addMount(k mountKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mounts == nil || len(c.mounts) >= c.max {
		c.mounts = make(map[mountKey]struct{})
	}
	c.mounts[k] = struct{}{}
}

// fdUniqueMountID returns the unique (never reused) mount ID of fd, when
// the kernel has them (statx STATX_MNT_ID_UNIQUE, Linux 6.8).
func fdUniqueMountID(fd int) (uint64, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &stx); err == nil && stx.Mask&unix.STATX_MNT_ID_UNIQUE != 0 {
		return stx.Mnt_id, true
	}
	return 0, false
}

// fdMountID returns the mount ID of the open file fd (statx(2)
// STATX_MNT_ID, Linux 5.8; before that "mnt_id:" of its fdinfo).
func fdMountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		return stx.Mnt_id, nil
	}
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, fmt.Errorf("attestor: mount of the executable: %w", err)
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("mnt_id:")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return 0, errors.New("attestor: mount of the executable: no mnt_id in fdinfo")
}

// hasMount reports whether the mountinfo file lists mount ID id (its
// first field).
func hasMount(path string, id uint64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	want := []byte(strconv.FormatUint(id, 10) + " ")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4<<10), 1<<20)
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), want) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// checkMountNSOwners walks from the user namespace that owns the mount
// namespace open as mfd up to the attestor's own (or the first it cannot see)
// and refuses one created by one of the process's uids (read only then).
func checkMountNSOwners(mfd, pid int, readUIDs func() ([]uint32, error)) error {
	self, err := selfUserNS()
	if err != nil {
		return err
	}
	var uids []uint32
	fd, err := unix.IoctlRetInt(mfd, unix.NS_GET_USERNS)
	for depth := 0; ; depth++ {
		if errors.Is(err, syscall.EPERM) {
			return nil // outside the attestor's user namespace: not the agent's
		}
		if err != nil {
			return fmt.Errorf("attestor: pid %d: owner of its mount namespace: %w", pid, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attestor: pid %d: %w", pid, err)
		}
		if st.Ino == self || depth > 32 {
			unix.Close(fd)
			return nil
		}
		if uids == nil {
			if uids, err = readUIDs(); err != nil {
				unix.Close(fd)
				return err
			}
		}
		var owner uint32
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_OWNER_UID, uintptr(unsafe.Pointer(&owner))); e != 0 {
			unix.Close(fd)
			return fmt.Errorf("attestor: pid %d: owner of user namespace %d: %w", pid, st.Ino, e)
		}
		if slices.Contains(uids, owner) {
			unix.Close(fd)
			return fmt.Errorf("attestor: pid %d runs in a mount namespace of user namespace %d, which uid %d (its own) created: it can mount a file system there that changes its executable while it runs", pid, st.Ino, owner)
		}
		next, perr := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
		unix.Close(fd)
		fd, err = next, perr
	}
}

// selfUserNS is the inode of the attestor's user namespace, read once (a
// process changes it only by unshare or setns, which the attestor does not).
var selfUserNS = sync.OnceValues(func() (uint64, error) { return nsInode("/proc/self/ns/user") })

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("attestor: %w", &os.PathError{Op: "stat", Path: path, Err: err})
	}
	return st.Ino, nil
}
