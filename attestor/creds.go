package attestor

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Creds is the part of /proc/<pid>/status that says what a process may
// write: its uids, gids, supplementary groups and capabilities.
type Creds struct {
	// UIDs are the real, effective, saved and filesystem uids ("Uid:").
	UIDs [4]uint32
	// GIDs are the real, effective, saved and filesystem gids ("Gid:").
	GIDs [4]uint32
	// Groups are the supplementary groups ("Groups:").
	Groups []uint32
	// CapPrm and CapEff are the permitted and effective capability sets.
	CapPrm, CapEff uint64
}

// UserCreds are the credentials of a process that runs as uid, gid and
// the supplementary groups, without capabilities: what a launcher that
// drops privileges execs the agent with.
func UserCreds(uid, gid uint32, groups []uint32) Creds {
	return Creds{UIDs: [4]uint32{uid, uid, uid, uid}, GIDs: [4]uint32{gid, gid, gid, gid}, Groups: groups}
}

// capNameList names capabilities by bit (linux/capability.h).
var capNameList = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// capNames lists the capabilities of a capability set, e.g.
// "CAP_SYS_PTRACE, CAP_BPF".
func capNames(set uint64) string {
	var names []string
	for bit := uint(0); bit < 64; bit++ {
		if set&(1<<bit) == 0 {
			continue
		}
		if int(bit) < len(capNameList) {
			names = append(names, capNameList[bit])
		} else {
			names = append(names, fmt.Sprintf("capability %d", bit))
		}
	}
	return strings.Join(names, ", ")
}

// ParseStatus parses the Uid, Gid, Groups, CapPrm and CapEff lines of
// /proc/<pid>/status. Uid and Gid are required.
func ParseStatus(b []byte) (Creds, error) {
	var c Creds
	var haveUID, haveGID bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var err error
		switch string(key) {
		case "Uid":
			err, haveUID = parseIDs(val, c.UIDs[:]), true
		case "Gid":
			err, haveGID = parseIDs(val, c.GIDs[:]), true
		case "Groups":
			c.Groups, err = parseGroups(val)
		case "CapPrm":
			c.CapPrm, err = strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
		case "CapEff":
			c.CapEff, err = strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
		}
		if err != nil {
			return Creds{}, fmt.Errorf("attestor: status: %s: %w", key, err)
		}
	}
	if !haveUID || !haveGID {
		return Creds{}, errors.New("attestor: status: no Uid or Gid line")
	}
	return c, nil
}

func parseIDs(val []byte, dst []uint32) error {
	f := bytes.Fields(val)
	if len(f) != len(dst) {
		return fmt.Errorf("%d ids, want %d", len(f), len(dst))
	}
	for i, s := range f {
		n, err := strconv.ParseUint(string(s), 10, 32)
		if err != nil {
			return err
		}
		dst[i] = uint32(n)
	}
	return nil
}

func parseGroups(val []byte) ([]uint32, error) {
	f := bytes.Fields(val)
	if len(f) == 0 {
		return nil, nil
	}
	out := make([]uint32, len(f))
	return out, parseIDs(val, out)
}

// ReadCreds reads and parses <procRoot>/<pid>/status ("" means /proc).
func ReadCreds(procRoot string, pid int) (Creds, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	buf := statusBufs.Get().(*[4096]byte)
	defer statusBufs.Put(buf)
	path := filepath.Join(procRoot, strconv.Itoa(pid), "status")
	n, err := readSmall(path, buf[:])
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return Creds{}, fmt.Errorf("attestor: pid %d: %w", pid, ErrNoProcess)
		}
		return Creds{}, fmt.Errorf("attestor: pid %d: %w", pid, err)
	}
	c, err := ParseStatus(buf[:n])
	if err != nil {
		return Creds{}, fmt.Errorf("%w (%s)", err, path)
	}
	return c, nil
}

// statusBufs recycles the buffers status files are read into.
var statusBufs = sync.Pool{New: func() any { return new([4096]byte) }}

// DirStat is what decides who may write the manifest directory: its real
// owner, group and permission bits.
type DirStat struct {
	UID, GID uint32
	Mode     uint32 // permission bits
}

// StatDir returns the owner, group and mode of dir (not following a
// symlink).
func StatDir(dir string) (DirStat, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return DirStat{}, fmt.Errorf("attestor: lstat %s: %w", dir, err)
	}
	return DirStat{UID: st.Uid, GID: st.Gid, Mode: uint32(st.Mode) & 0o7777}, nil
}

// Forgery says why a process could forge manifests: [Reason] is
// ReasonAgentWritesDir or ReasonAgentOwnsManifests, Detail names the uid,
// group or capability.
type Forgery struct {
	Reason Reason
	Detail string
	// Fix says how to repair it.
	Fix string
}

// CouldForge reports whether a process with creds c could create, replace,
// rename or delete manifests in a directory with stat d, or own manifests
// the attestor accepts (a uid in owners, the allowed manifest owners): any
// of its uids is root or owns d with u+w, any of its gids or groups is d's
// group with g+w, d is world-writable, or it holds a capability that
// bypasses or changes permissions. It returns nil when it could not.
func CouldForge(c Creds, d DirStat, owners []uint32) *Forgery {
	const (
		fixUID   = "run the agent as a dedicated unprivileged uid that owns neither the directory nor manifests"
		fixGroup = "do not put the agent in the directory's group (the launchers'), or make the directory not group-writable (chmod g-w)"
	)
	writes := func(fix, format string, args ...any) *Forgery {
		return &Forgery{Reason: ReasonAgentWritesDir, Detail: fmt.Sprintf(format, args...), Fix: fix}
	}
	for i, uid := range c.UIDs {
		switch {
		case uid == 0:
			return writes(fixUID, "%s uid is 0 (root writes any directory)", uidNames[i])
		case uid == d.UID && d.Mode&0o200 != 0:
			return writes(fixUID, "%s uid %d owns the directory (mode %04o)", uidNames[i], uid, d.Mode)
		}
	}
	if d.Mode&0o020 != 0 {
		for i, gid := range c.GIDs {
			if gid == d.GID {
				return writes(fixGroup, "%s gid %d is the directory's group (mode %04o)", uidNames[i], gid, d.Mode)
			}
		}
		if slices.Contains(c.Groups, d.GID) {
			return writes(fixGroup, "member of the directory's group %d (mode %04o)", d.GID, d.Mode)
		}
	}
	if d.Mode&0o002 != 0 {
		return writes("chmod o-w the directory", "the directory is world-writable (mode %04o)", d.Mode)
	}
	if held := c.CapPrm | c.CapEff; held != 0 {
		// Any capability, not only the six that write the directory:
		// CAP_SYS_PTRACE takes over the launcher or the SPIRE agent,
		// CAP_DAC_READ_SEARCH reads its keys, CAP_SYS_MODULE or CAP_BPF own
		// the kernel. (Ambient capabilities are a subset of the permitted.)
		return writes("start the agent without capabilities (agentid run --user drops them)", "holds %s", capNames(held))
	}
	for i, uid := range c.UIDs {
		if slices.Contains(owners, uid) {
			return &Forgery{Reason: ReasonAgentOwnsManifests, Fix: fixUID,
				Detail: fmt.Sprintf("%s uid %d is an allowed manifest owner %v", uidNames[i], uid, owners)}
		}
	}
	return nil
}

var uidNames = [4]string{"real", "effective", "saved", "filesystem"}
