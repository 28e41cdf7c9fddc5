package spiretest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
)

// proc is a running SPIRE process whose stdout and stderr go to a log file
// (the process handling is shared with the dev stack).
type proc = devstack.Process

// startProc starts bin with args and env, appending its output to logPath.
// On Linux the process gets SIGTERM if the test binary dies first.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	return devstack.StartProcess(name, bin, args, env, logPath)
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

// dumpLogOnFailure registers a cleanup that logs the tail of the file at
// path, without debug lines, if the test failed (set KeepEnv to keep the
// whole log). Register it before the cleanup that stops the
// process so that it runs after it and shows the shutdown too.
func dumpLogOnFailure(t testing.TB, what, path string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("spiretest: last lines of the %s log %s:\n%s", what, path, devstack.LogTail(path, 60))
		}
	})
}

// logContains reports whether the file at path contains s.
func logContains(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}
