package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ListenUnix listens on a unix socket at path with file mode mode (0600 or
// 0660: the permissions are the operators' authentication). The socket is
// bound and chmod-ed in a private directory beside path and then renamed
// into place, so that it is never reachable with looser permissions. A stale
// socket at path is replaced; a socket someone still serves on is an error,
// as is any other file. Closing the listener removes the socket.
func ListenUnix(path string, mode fs.FileMode) (net.Listener, error) {
	if mode&^0o770 != 0 || mode&0o600 != 0o600 {
		return nil, fmt.Errorf("operator socket %s: mode %#o: want 0600 or 0660 (owner read-write, no access for others)", path, mode)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".registrar-")
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	if err := os.Rename(bound, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	return &unixListener{UnixListener: l, path: path}, nil
}

// clearStale removes a socket at path that nobody serves on.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("operator socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("operator socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("operator socket %s: in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("operator socket: %w", err)
	}
	return nil
}

// unixListener removes its socket (bound elsewhere, then renamed) on Close.
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

// Addr is the socket's final path (not where it was bound).
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}
