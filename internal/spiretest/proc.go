package spiretest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopTimeout is how long a process has to exit after SIGTERM before it is
// killed.
const stopTimeout = 10 * time.Second

// proc is a running SPIRE process whose stdout and stderr go to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the Wait error, set before done is closed
}

// startProc starts bin with args and env, appending its output to logPath.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited, with its Wait error.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits, killing the process after stopTimeout.
// It returns an error only if the process had to be killed.
func (p *proc) stop() error {
	if ok, _ := p.exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.name, p.cmd.Process.Pid, stopTimeout)
}

// procEnv is the environment of the SPIRE processes: the test's own, with
// TMPDIR (where go-plugin makes its sockets) pointing to tmpDir, then extra.
func procEnv(tmpDir string, extra []string) []string {
	env := append(os.Environ(), "TMPDIR="+tmpDir)
	return append(env, extra...)
}

// poll calls f every interval until it returns true or an error that is
// final, or until timeout passes; it then returns the last error f gave.
// The first call happens at once.
func poll(timeout, interval time.Duration, f func() (done bool, err error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := f()
		if done {
			return err
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return fmt.Errorf("after %v: %w", timeout, last)
		}
		time.Sleep(interval)
	}
}

// logTail returns the last n lines of the file at path that are not
// debug-level log lines.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	lines = slices.DeleteFunc(lines, func(l []byte) bool {
		return bytes.Contains(l, []byte("level=debug"))
	})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// dumpLogOnFailure registers a cleanup that logs the tail of the file at
// path, without debug lines, if the test failed (set KeepEnv to keep the
// whole log). Register it before the cleanup that stops the
// process so that it runs after it and shows the shutdown too.
func dumpLogOnFailure(t testing.TB, what, path string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("spiretest: last lines of the %s log %s:\n%s", what, path, logTail(path, 60))
		}
	})
}

// logContains reports whether the file at path contains s.
func logContains(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}
