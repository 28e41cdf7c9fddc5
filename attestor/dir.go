package attestor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// DefaultManifestDir is where launchers write manifests and the attestor
// reads them.
const DefaultManifestDir = "/run/agentid/tasks"

// DirPolicy says which manifest directories are safe to write to or read
// from. [DirPolicy.Check] accepts a directory when:
//
//   - it exists and is a directory itself, not a symlink to one;
//   - its owner is root or one of Owners (default: root and the effective
//     uid of the caller);
//   - it is not writable by others (no o+w), so nobody outside the owner
//     and the group can create, replace or delete manifests;
//   - it is not writable by its group (no g+w) unless GroupWritable is set:
//     mode 0770 (or 01770) is for deployments whose launchers are members
//     of a dedicated group rather than root.
//
// Read and execute bits are not checked: 0750 and 0700 both pass.
type DirPolicy struct {
	Owners        []uint32
	GroupWritable bool
}

// DirError is an unsafe or missing manifest directory. Fix says how to
// repair it, as a command an operator can run.
type DirError struct {
	Dir     string
	Problem string
	Fix     string
	Err     error
}

func (e *DirError) Error() string {
	s := "attestor: manifest directory " + e.Dir + " " + e.Problem
	if e.Fix != "" {
		s += "; fix: " + e.Fix
	}
	return s
}

func (e *DirError) Unwrap() error { return e.Err }

// Check returns nil when dir is safe under the policy, or a *[DirError].
func (p DirPolicy) Check(dir string) error {
	_, err := p.check(dir)
	return err
}

// check is Check returning the directory's owner, group and mode too.
func (p DirPolicy) check(dir string) (DirStat, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return DirStat{}, &DirError{Dir: dir, Problem: "does not exist", Err: err,
				Fix: "install -d -m 0750 -o root -g agentid " + dir + " (0770 if launchers write through the group)"}
		}
		return DirStat{}, &DirError{Dir: dir, Problem: "cannot be inspected", Err: err}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return DirStat{}, &DirError{Dir: dir, Problem: "is a symlink", Fix: "point the manifest directory at the real directory"}
	}
	if !fi.IsDir() {
		return DirStat{}, &DirError{Dir: dir, Problem: "is not a directory",
			Fix: "rm " + dir + " && install -d -m 0750 -o root -g agentid " + dir}
	}
	st := fi.Sys().(*syscall.Stat_t)
	d := DirStat{UID: st.Uid, GID: st.Gid, Mode: uint32(st.Mode) & 0o7777}
	owners := p.owners()
	if st.Uid != 0 && !slices.Contains(owners, st.Uid) {
		return DirStat{}, &DirError{Dir: dir, Problem: fmt.Sprintf("is owned by uid %d, want root or one of %v", st.Uid, owners),
			Fix: "chown root " + dir}
	}
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 {
		return DirStat{}, &DirError{Dir: dir, Problem: fmt.Sprintf("is world-writable (mode %04o)", perm),
			Fix: "chmod o-w " + dir}
	}
	if perm&0o020 != 0 && !p.GroupWritable {
		return DirStat{}, &DirError{Dir: dir, Problem: fmt.Sprintf("is group-writable (mode %04o)", perm),
			Fix: "chmod g-w " + dir + ", or accept it explicitly (agentid run --group-writable) when launchers write through a dedicated group"}
	}
	return d, nil
}

func (p DirPolicy) owners() []uint32 {
	if p.Owners != nil {
		return p.Owners
	}
	return defaultOwners()
}

// defaultOwners is root and the caller's effective uid.
func defaultOwners() []uint32 {
	euid := uint32(os.Geteuid())
	if euid == 0 {
		return []uint32{0}
	}
	return []uint32{0, euid}
}

// dirLock is an flock(2) on the manifest directory. Launchers hold it
// shared while they write; removals of stale manifests hold it exclusive
// and re-check the file under it, so a removal never deletes a manifest a
// launcher renamed into place after the check.
type dirLock struct{ fd int }

var errLocked = errors.New("attestor: manifest directory is locked")

func lockDir(dir string, how int) (*dirLock, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	for {
		err = syscall.Flock(fd, how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		if err == syscall.EWOULDBLOCK {
			return nil, errLocked
		}
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return &dirLock{fd: fd}, nil
}

func (l *dirLock) unlock() { syscall.Close(l.fd) }

const lockShared = syscall.LOCK_SH
