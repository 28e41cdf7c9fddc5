package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon is a background process stopped with SIGTERM at the end of the test.
type daemon struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), log: &bytes.Buffer{}}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), d.log.String())
		}
	})
	return d
}

// waitTCP waits until addr accepts connections.
func waitTCP(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRegistrar runs agentid-registrar with its own SVID (an entry
// selecting its binary by path) and a metrics listener (s.regMetrics), and
// returns its mTLS address.
func (s *stack) startRegistrar(t *testing.T) string {
	t.Helper()
	bin := s.buildDaemon("./cmd/agentid-registrar")
	s.srv.CreateEntry(t, "spiffe://example.org/registrar", s.agent.NodeID.String(), "unix:path:"+bin)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	metrics := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s.regMetrics = "http://" + metrics
	cfg := filepath.Join(s.dir, "registrar.hcl")
	writeFile(t, cfg, `
trust_domain        = "example.org"
server_api_socket   = "`+s.srv.SocketPath+`"
issuance_policy     = "`+s.policy+`"
operator_socket     = "`+filepath.Join(s.srv.Root, "reg.sock")+`"
listen              = "`+addr+`"
workload_api_socket = "`+s.agent.SocketPath+`"
metrics {
  listen = "`+metrics+`"
}
`)
	startDaemon(t, bin, "-config", cfg)
	waitTCP(t, addr, 30*time.Second)
	return addr
}

// buildDaemon builds a command into its own path so that a unix:path
// selector names it alone. The path is resolved as /proc/<pid>/exe shows it.
func (s *stack) buildDaemon(pkg string) string {
	bin, err := filepath.EvalSymlinks(buildCmd(s.t, pkg))
	if err != nil {
		s.t.Fatal(err)
	}
	return bin
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
