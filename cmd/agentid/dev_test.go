package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
)

func TestDevMissingSpire(t *testing.T) {
	empty := t.TempDir()
	code, _, stderr := runCLI(t, "dev", "--spire-bin", empty)
	want := "agentid dev: spire-server not found in " + empty +
		": run `make spire` (builds SPIRE 1.13.3 from the Go module proxy) or pass --spire-bin DIR\n"
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant 1, %q", code, stderr, want)
	}
}

func TestDevPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	// The binaries are only looked for before the port is checked.
	bin := t.TempDir()
	for _, n := range []string{"spire-server", "spire-agent", "agentid-registrar", "agentid-verifier", "agentid-attestor", "agentid-composer"} {
		if err := os.WriteFile(filepath.Join(bin, n), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := runCLI(t, "dev", "--spire-bin", bin, "--bin-dir", bin, "--port", fmt.Sprint(port))
	want := fmt.Sprintf("agentid dev: port %d is in use: choose another with --port\n", port)
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant 1, %q", code, stderr, want)
	}
}

func TestDevUsage(t *testing.T) {
	if code, _, stderr := runCLI(t, "dev", "extra"); code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "dev", "-h"); code != 0 || !strings.Contains(stderr, "-spire-bin string") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevRun starts `agentid dev` for real and runs the commands it prints,
// as a user would paste them into a shell.
func TestDevRun(t *testing.T) {
	spireBin := spiretest.Bin(t)
	root, err := spiretest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/agentid", "./cmd/agentid-attestor",
		"./cmd/agentid-composer", "./cmd/agentid-registrar", "./cmd/agentid-verifier")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	dir := filepath.Join(t.TempDir(), "dev")
	var stdout, stderr syncBuffer
	env := &cli{stdout: &stdout, stderr: &stderr, stdin: strings.NewReader("")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- env.dev(ctx, []string{"--spire-bin", spireBin, "--bin-dir", binDir, "--dir", dir, "--keep"})
	}()
	const marker = "Try it from another shell:\n"
	err = devstack.Poll(context.Background(), 60*time.Second, func() (bool, error) {
		select {
		case err := <-result:
			return true, fmt.Errorf("agentid dev returned early: %v\n%s", err, stderr.String())
		default:
		}
		out := stdout.String()
		return strings.Contains(out, marker) && strings.HasSuffix(out, "\n\n"), nil
	})
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Logf("agentid dev printed:\n%s", out)
	for _, want := range []string{"Trust domain:", "spiffe://example.org/agentid/dev-node", filepath.Join(dir, "server", "api.sock"),
		filepath.Join(dir, "agent", "public", "api.sock"), filepath.Join(dir, "tasks"), "/v1/check"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// Paste the commands: step 1 once, steps 2-4 until the new entry has
	// reached the agent.
	script := out[strings.Index(out, marker)+len(marker):]
	step2 := strings.Index(script, "  # 2.")
	exports := ""
	for _, l := range strings.Split(script[:step2], "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "export ") {
			exports += l + "\n"
		}
	}
	work := t.TempDir()
	bash := func(src string) (string, error) {
		cmd := exec.Command("bash", "-c", "set -e -o pipefail\n"+src)
		cmd.Dir = work
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if o, err := bash(script[:step2]); err != nil {
		t.Fatalf("step 1: %v\n%s", err, o)
	}
	var last string
	err = devstack.Poll(context.Background(), 20*time.Second, func() (bool, error) {
		o, err := bash(exports + script[step2:])
		last = o
		if err != nil {
			return false, fmt.Errorf("%v\n%s", err, o)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("steps 2-4: %v", err)
	}
	for _, want := range []string{"Agent:       planner", "Chain[0]:    spiffe://example.org/agent/planner/task/", "Incarnation: ",
		`"allow":true`, `"rules":["dev-tasks`, `"allow":false`, `"rules":["dev-no-deletes`} {
		if !strings.Contains(last, want) {
			t.Errorf("steps 2-4 output lacks %q:\n%s", want, last)
		}
	}

	// Ctrl-C: everything stops; --keep keeps the files.
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("agentid dev: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("agentid dev did not stop")
	}
	if !strings.Contains(stderr.String(), "agentid dev: stopped; files kept in "+dir) {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	for _, f := range []string{"logs/spire-server.log", "logs/registrar.log", "server/server.conf", "registrar/issuance.hcl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("--keep: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "agent", "public", "api.sock")); err == nil {
		t.Error("the agent's socket remains: spire-agent still running?")
	}
}
