package attestor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsolateExec prepares the calling process for an exec as an agent of
// another uid: it gives up its controlling terminal and marks every
// descriptor above 2 close-on-exec, so the agent inherits neither. See
// [Launch.Exec].
//
// Without the first, an agent keeps the launcher's terminal as its own and
// can push input into it with TIOCSTI, which the shell that ran `agentid
// run` (root) reads once the agent exits. Without the second, whatever the
// launcher was handed (a root-only file, a socket) reaches the agent.
func IsolateExec() error {
	if err := detachTerminal(); err != nil {
		return err
	}
	return closeInheritedFDs()
}

// detachTerminal drops the controlling terminal (TIOCNOTTY). setsid(2)
// would too, but it fails in a process group leader, which a launcher that
// a shell started as a job is. The process keeps its process group, so the
// terminal's ^C still reaches the agent; its standard descriptors stay
// open. The terminal stays the controlling terminal of the shell's
// session, so the agent cannot take it back (TIOCSCTTY needs a session
// leader and a terminal without a session).
//
// A launcher that is the session leader of its terminal is refused: its
// TIOCNOTTY would leave the terminal without a session, and the agent,
// still session leader after the exec, could make it its controlling
// terminal again and push input into it.
func detachTerminal() error {
	fd, err := syscall.Open("/dev/tty", syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.EIO):
		return nil // no controlling terminal, or one that was hung up
	case err != nil:
		return fmt.Errorf("attestor: launch: cannot give up the controlling terminal: %w; fix: start agentid run without one (setsid, or from a service)", err)
	}
	defer syscall.Close(fd)
	if sid, _ := unix.Getsid(0); sid == os.Getpid() {
		return errors.New("attestor: launch: agentid run is the session leader of its controlling terminal: the agent could take the terminal back and push input into it (TIOCSTI); fix: start it as `setsid -w agentid run …` (a new session without a terminal), from a shell job, or from a service")
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCNOTTY, 0); err != nil {
		return fmt.Errorf("attestor: launch: detach from the controlling terminal (TIOCNOTTY): %w", err)
	}
	return nil
}

// closeInheritedFDs marks every descriptor above 2 close-on-exec
// (close_range(2) with CLOSE_RANGE_CLOEXEC, Linux 5.11; before that, each
// descriptor of /proc/self/fd). Go opens its own descriptors close-on-exec
// already, so nothing the launcher still uses is closed before the exec.
func closeInheritedFDs() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EINVAL) {
		if err != nil {
			return fmt.Errorf("attestor: launch: close_range: %w", err)
		}
		return nil
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("attestor: launch: listing inherited descriptors: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("attestor: launch: listing inherited descriptors: %w", err)
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 || fd == int(d.Fd()) {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, syscall.EBADF) {
			return fmt.Errorf("attestor: launch: close-on-exec for descriptor %d: %w", fd, err)
		}
	}
	return nil
}
