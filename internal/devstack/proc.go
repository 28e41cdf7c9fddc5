package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Timeouts. Nothing sleeps for a fixed time: every wait polls with a deadline.
const (
	// StartTimeout bounds the wait for one component to become ready. The
	// daemons wait up to 30 s for their SVID themselves.
	StartTimeout = 40 * time.Second
	// StopTimeout is how long a process has to exit after SIGTERM before it
	// is killed.
	StopTimeout = 10 * time.Second
	// pollInterval is how often readiness is checked.
	pollInterval = 50 * time.Millisecond
)

// Process is a child process whose stdout and stderr go to a log file.
type Process struct {
	// Name is the component's name, e.g. "spire-server".
	Name string
	// LogPath is the file its output is appended to.
	LogPath string

	cmd           *exec.Cmd
	done          chan struct{} // closed when the process has exited
	err           error         // the Wait error, set before done is closed
	stopRequested atomic.Bool   // Stop was called: the exit is expected
}

// StartProcess starts bin with args and env (nil: this process's
// environment), appending its output to logPath. On Linux the child gets
// SIGTERM if this process dies without stopping it.
func StartProcess(name, bin string, args, env []string, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
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
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, with its Wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits, killing the process after StopTimeout. It
// returns an error only if the process had to be killed. Stopping an exited
// process does nothing.
func (p *Process) Stop() error {
	p.stopRequested.Store(true)
	if ok, _ := p.Exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.Name, p.Pid(), StopTimeout)
}

// Kill kills the process with SIGKILL, as a crash would, and waits for
// it; the stack does not take the exit for a failure.
func (p *Process) Kill() {
	p.stopRequested.Store(true)
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// LogTail returns the last n lines of the process's log that are not
// debug-level lines.
func (p *Process) LogTail(n int) string { return LogTail(p.LogPath, n) }

// WaitReady polls ready every pollInterval until it returns nil, the
// process exits, ctx ends or timeout passes. The error names the process,
// the last readiness error and, when the process exited, the tail of its
// log.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready func() error) error {
	err := Poll(ctx, timeout, func() (bool, error) {
		if ok, err := p.Exited(); ok {
			if err == nil {
				err = errors.New("exit status 0")
			}
			return true, fmt.Errorf("exited during start-up (%v); last lines of %s:\n%s", err, p.LogPath, p.LogTail(20))
		}
		err := ready()
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("%s is not ready: %w", p.Name, err)
	}
	return nil
}

// Poll calls f every pollInterval until it returns done, ctx ends or
// timeout passes; it then returns the error f gave with done, or the last
// error f gave. The first call happens at once.
func Poll(ctx context.Context, timeout time.Duration, f func() (done bool, err error)) error {
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
		select {
		case <-ctx.Done():
			if last == nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// CheckHealth makes one gRPC health check on the unix socket, as
// `spire-server healthcheck` and `spire-agent healthcheck` do, on a new
// connection (a reused one would back off after a refused dial).
func CheckHealth(ctx context.Context, socket string) error {
	if _, err := os.Stat(socket); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %v", resp.Status)
	}
	return nil
}

// dialCheck connects to network/addr once and closes the connection.
func dialCheck(network, addr string) error {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// LogTail returns the last n lines of the file at path that are not
// debug-level log lines.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	lines = slices.DeleteFunc(lines, func(l []byte) bool {
		return bytes.Contains(l, []byte("level=debug")) || bytes.Contains(l, []byte("level=DEBUG"))
	})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// logContains reports whether the file at path contains s.
func logContains(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortInUseError is a TCP port of 127.0.0.1 that another process holds.
type PortInUseError struct {
	Port int
	Err  error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("port %d is in use: choose another with --port", e.Port)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// checkPortFree returns a *PortInUseError if port of 127.0.0.1 cannot be
// bound.
func checkPortFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &PortInUseError{Port: port, Err: err}
		}
		return fmt.Errorf("port %d: %w", port, err)
	}
	return l.Close()
}
