package attestor

import (
	"errors"
	"os"
	"syscall"
)

// openedFile is a manifest file read without following symlinks, with the
// metadata of the very inode that was read.
type openedFile struct {
	data []byte
	st   syscall.Stat_t
}

// readNoFollow opens path with O_NOFOLLOW (a symlink fails with ELOOP) and
// O_NONBLOCK (a FIFO cannot hang the reader), fstats the descriptor and, for
// a regular file of at most max bytes, reads it. The caller checks st.
func readNoFollow(path string, max int) (openedFile, error) {
	var f openedFile
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return f, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	if err := syscall.Fstat(fd, &f.st); err != nil {
		return f, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if f.st.Mode&syscall.S_IFMT != syscall.S_IFREG || f.st.Size > int64(max) {
		return f, nil // the caller refuses it by st
	}
	f.data = make([]byte, f.st.Size)
	n := 0
	for n < len(f.data) {
		m, err := syscall.Read(fd, f.data[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return f, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	f.data = f.data[:n]
	return f, nil
}

// isSymlinkErr reports whether err is open(O_NOFOLLOW) refusing a symlink.
func isSymlinkErr(err error) bool { return errors.Is(err, syscall.ELOOP) }
