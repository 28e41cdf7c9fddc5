package attestor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// DefaultProcRoot is where the proc filesystem is mounted.
const DefaultProcRoot = "/proc"

// Stat is the part of /proc/<pid>/stat the attestor uses.
type Stat struct {
	// PID is field 1.
	PID int
	// Comm is field 2 without its parentheses: the executable's name as the
	// process set it (at most 15 bytes, any bytes but NUL, ')' included).
	Comm string
	// State is field 3 (R, S, D, Z, ...).
	State byte
	// PPID is field 4, the parent's PID (0 for the init of a PID namespace
	// and kernel threads).
	PPID int
	// StartTime is field 22: when the process started, in clock ticks since
	// boot. (PID, StartTime) names a process for as long as the machine runs.
	StartTime uint64
}

// statFieldsAfterComm is how many space-separated fields follow the comm
// field up to and including starttime (fields 3..22).
const statFieldsAfterComm = 20

// ParseStat parses the contents of /proc/<pid>/stat. The comm field can hold
// spaces, parentheses and ") " sequences, so it is taken to end at the last
// ')' in the line: the fields after it are numbers and a state letter.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return Stat{}, errors.New("attestor: stat: no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return Stat{}, fmt.Errorf("attestor: stat: bad pid %q", bytes.TrimSpace(b[:open]))
	}
	st := Stat{PID: pid, Comm: string(b[open+1 : closing])}
	rest := b[closing+1:]
	var fields [statFieldsAfterComm][]byte
	for i := range fields {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return Stat{}, fmt.Errorf("attestor: stat: %d fields after comm, want at least %d", i, statFieldsAfterComm)
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	if len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("attestor: stat: bad state %q", fields[0])
	}
	st.State = fields[0][0]
	if st.PPID, err = strconv.Atoi(string(fields[1])); err != nil || st.PPID < 0 {
		return Stat{}, fmt.Errorf("attestor: stat: bad ppid %q", fields[1])
	}
	if st.StartTime, err = strconv.ParseUint(string(fields[19]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("attestor: stat: bad starttime %q", fields[19])
	}
	return st, nil
}

// ReadStat reads and parses <procRoot>/<pid>/stat ("" means /proc). A
// process that does not exist gives an error matching [ErrNoProcess].
func ReadStat(procRoot string, pid int) (Stat, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	if pid <= 0 {
		return Stat{}, fmt.Errorf("attestor: pid %d: %w", pid, ErrNoProcess)
	}
	var buf [1024]byte
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	n, err := readSmall(path, buf[:])
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return Stat{}, fmt.Errorf("attestor: pid %d: %w", pid, ErrNoProcess)
		}
		return Stat{}, fmt.Errorf("attestor: pid %d: %w", pid, err)
	}
	st, err := ParseStat(buf[:n])
	if err != nil {
		return Stat{}, fmt.Errorf("%w (%s)", err, path)
	}
	if st.PID != pid {
		return Stat{}, fmt.Errorf("attestor: %s names pid %d", path, st.PID)
	}
	return st, nil
}

// readSmall reads a small file into buf without the allocations of os.File.
// A file larger than buf is an error.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			return 0, &os.PathError{Op: "read", Path: path, Err: errors.New("file too large")}
		}
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return n, nil
		}
		n += m
	}
}
