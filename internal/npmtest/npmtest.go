// Package npmtest gives tests the npm side of the MCP interop tests: the
// TypeScript MCP client of examples/mcp/client (built with
// @modelcontextprotocol/sdk) and the published MCP servers
// @modelcontextprotocol/server-filesystem and
// @modelcontextprotocol/server-everything, at the versions that
// examples/mcp/client/package-lock.json pins, installed by `make mcp-npm`
// into .cache/npm/mcp-client.
//
//	js := npmtest.Require(t) // installs (once, under a file lock) or skips if npm cannot
//	cmd := exec.Command(js.Node, js.Client, "--url", url, "--token-file", tok, "list")
//	srv := exec.Command(js.Node, js.Bin("mcp-server-filesystem"), root)
//	everything := js.StartEverything(t) // server-everything over Streamable HTTP at everything.URL
package npmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
)

// Tools is an installed copy of examples/mcp/client.
type Tools struct {
	// Dir is the install folder, <repo>/.cache/npm/mcp-client.
	Dir string
	// Node is the node executable.
	Node string
	// Client is the compiled TypeScript client, Dir/dist/client.js: run it
	// with Node.
	Client string
}

// Bin returns the script of an installed package's executable, e.g.
// "mcp-server-filesystem": run it with Node.
func (t *Tools) Bin(name string) string {
	return filepath.Join(t.Dir, "node_modules", ".bin", name)
}

// UnavailableError says that npm could not install the packages (no node
// or npm on the machine, no registry reachable): tests skip with it.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return "npm cannot install the MCP packages: " + e.Reason }

var installed struct {
	sync.Mutex
	done  bool
	tools *Tools
	err   error
}

// Require returns the installed tools, running `make mcp-npm` once per
// test binary (a no-op when nothing changed). It skips the test with the
// reason when npm cannot install the packages, and fails it for any
// other error (the client does not compile, …).
func Require(t testing.TB) *Tools {
	t.Helper()
	tools, err := Install()
	var un *UnavailableError
	switch {
	case errors.As(err, &un):
		t.Skipf("npmtest: %v", err)
	case err != nil:
		t.Fatalf("npmtest: %v", err)
	}
	return tools
}

// Install runs `make mcp-npm` in the repository (once per process, under
// an exclusive lock on .cache/npm/mcp-client.lock so that test binaries
// running in parallel do not install twice) and returns the tools.
func Install() (*Tools, error) {
	installed.Lock()
	defer installed.Unlock()
	if !installed.done {
		installed.tools, installed.err = install()
		installed.done = true
	}
	return installed.tools, installed.err
}

func install() (*Tools, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, &UnavailableError{Reason: "node is not installed (" + err.Error() + ")"}
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return nil, &UnavailableError{Reason: "npm is not installed (" + err.Error() + ")"}
	}
	root, err := spiretest.RepoRoot()
	if err != nil {
		return nil, err
	}
	t := &Tools{Dir: filepath.Join(root, ".cache", "npm", "mcp-client"), Node: node}
	t.Client = filepath.Join(t.Dir, "dist", "client.js")
	unlock, err := lockFile(t.Dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	out, err := exec.Command("make", "-s", "-C", root, "mcp-npm").CombinedOutput()
	if err != nil {
		// npm ci failing leaves no hidden lockfile newer than the
		// committed one; then it is npm that could not install.
		if !newer(filepath.Join(t.Dir, "node_modules", ".package-lock.json"), filepath.Join(root, "examples", "mcp", "client", "package-lock.json")) {
			return nil, &UnavailableError{Reason: fmt.Sprintf("make mcp-npm: %v\n%s", err, out)}
		}
		return nil, fmt.Errorf("make mcp-npm: %w\n%s", err, out)
	}
	if _, err := os.Stat(t.Client); err != nil {
		return nil, fmt.Errorf("make mcp-npm succeeded but %w\n%s", err, out)
	}
	return t, nil
}

// newer reports whether a exists and was modified after b.
func newer(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && fa.ModTime().After(fb.ModTime())
}

// lockFile takes an exclusive flock on path, creating it and its folder.
func lockFile(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// Server is an npm MCP server run for a test.
type Server struct {
	// URL is its MCP endpoint, http://127.0.0.1:port/mcp.
	URL string

	t    testing.TB
	argv []string
	env  []string
	addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *lockedBuffer
}

// StartEverything runs @modelcontextprotocol/server-everything over
// Streamable HTTP on a free port (it listens on every interface: the
// server takes no address) until the test ends.
func (js *Tools) StartEverything(t testing.TB) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, argv: []string{js.Node, js.Bin("mcp-server-everything"), "streamableHttp"},
		env: append(os.Environ(), "PORT="+strconv.Itoa(port)), addr: "127.0.0.1:" + strconv.Itoa(port)}
	s.URL = "http://" + s.addr + "/mcp"
	s.start()
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	return s
}

// Kill kills the server (SIGKILL) and waits for it to exit.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Restart starts the server again on the same port, after Kill.
func (s *Server) Restart() { s.t.Helper(); s.start() }

func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &lockedBuffer{}
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not listening on %s: %v\n%s", filepath.Base(s.argv[1]), s.addr, err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	s.cmd.Wait()
	s.cmd = nil
}

// lockedBuffer is a bytes.Buffer a child process writes while a test may
// read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
