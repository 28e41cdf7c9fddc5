package spiretest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// KeepEnv names the environment variable that, when set, keeps the scratch
// folder of a failed test (configs, full logs, data) instead of removing it.
const KeepEnv = "SPIRETEST_KEEP"

// startTimeout bounds the wait for a SPIRE process to become healthy.
const startTimeout = 30 * time.Second

// Options configure a SPIRE server. The zero value is a working server for
// trust domain example.org.
type Options struct {
	// TrustDomain is the trust domain name; default "example.org".
	TrustDomain string
	// Plugins holds extra HCL blocks for the server's `plugins { }`, e.g. a
	// CredentialComposer rendered by PluginBlock.
	Plugins string
	// Config holds extra HCL lines for the `server { }` block. It already
	// has an `experimental { cache_reload_interval = "1s" }` block.
	Config string
	// LogLevel is the server log level; default "DEBUG".
	LogLevel string
	// X509SVIDTTL and JWTSVIDTTL are the default SVID lifetimes; default 1h
	// and 5m.
	X509SVIDTTL, JWTSVIDTTL time.Duration
	// Env holds extra KEY=value environment variables for the server and
	// its plugins.
	Env []string
	// EventsBasedCache makes the server follow entry changes through
	// SPIRE's events (experimental events_based_cache) instead of a full
	// reload of every entry per cache_reload_interval, as agentid dev runs
	// it; what a server with many entries should use.
	EventsBasedCache bool
	// DataStore holds the HCL lines of the `plugin_data { }` of the
	// server's DataStore "sql" plugin; default an sqlite3 database in the
	// server's data folder. Servers given the same shared database (e.g.
	// `database_type = "postgres"` and one connection_string) and the same
	// trust domain form a SPIRE HA cluster: entries, agents, join tokens and
	// the bundle live in the datastore, each server keeps its own keys. Give
	// their agents distinct AgentOptions.NodeName values then, since each
	// server numbers its own agents from 1.
	DataStore string
}

// Server is a running spire-server. Its fields are read-only.
type Server struct {
	// Root is the test's scratch folder holding the server's and the
	// agents' folders, and the TMPDIR of the SPIRE processes.
	Root string
	// Dir is the server's folder: server.conf, server.log, data/.
	Dir string
	// SocketPath is the server's local API socket (absolute path).
	SocketPath string
	// ConfigPath and LogPath are the server's config and log files.
	ConfigPath, LogPath string
	// TrustDomain is the server's trust domain.
	TrustDomain spiffeid.TrustDomain
	// Port is the server's TCP port on 127.0.0.1, where agents connect.
	Port int

	bin    string
	env    []string
	opts   Options
	proc   *proc
	agents atomic.Int32 // number of agents started, for node IDs
}

// StartServer starts a spire-server with an sqlite datastore, a join_token
// node attestor and fast entry cache reloads, in fresh folders under a short
// temporary root, on a free port of 127.0.0.1. It returns once the server
// reports healthy. The server is stopped with SIGTERM and the folders removed
// when the test ends; if the test failed, the tail of the log is printed.
func StartServer(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Bin(t)
	root := scratchRoot(t)
	s := &Server{Root: root, Dir: filepath.Join(root, "server"), bin: bin}
	s.TrustDomain = trustDomain(t, opts.TrustDomain)
	s.SocketPath = filepath.Join(s.Dir, "api.sock")
	s.ConfigPath = filepath.Join(s.Dir, "server.conf")
	s.LogPath = filepath.Join(s.Dir, "server.log")
	s.env = procEnv(filepath.Join(root, "tmp"), opts.Env)
	s.opts = opts
	mkdirs(t, filepath.Join(root, "tmp"), filepath.Join(s.Dir, "data"))
	dumpLogOnFailure(t, "spire-server", s.LogPath)
	if err := s.start(t, opts); err != nil {
		// A port picked by FreePort can be taken before the server binds it.
		if !logContains(s.LogPath, "address already in use") {
			t.Fatalf("spiretest: %v", err)
		}
		t.Logf("spiretest: retrying spire-server start on another port: %v", err)
		if err := s.start(t, opts); err != nil {
			t.Fatalf("spiretest: %v", err)
		}
	}
	return s
}

// scratchRoot makes the test's root folder. It stays short: unix socket
// paths are limited to 107 bytes.
func scratchRoot(t testing.TB) string {
	t.Helper()
	root, err := os.MkdirTemp("", "aid")
	if err == nil && len(root) > 40 {
		os.Remove(root)
		root, err = os.MkdirTemp("/tmp", "aid")
	}
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	t.Cleanup(func() { // registered first, runs last
		if t.Failed() && os.Getenv(KeepEnv) != "" {
			t.Logf("spiretest: $%s is set: kept %s", KeepEnv, root)
			return
		}
		os.RemoveAll(root)
	})
	return root
}

func trustDomain(t testing.TB, name string) spiffeid.TrustDomain {
	t.Helper()
	if name == "" {
		name = "example.org"
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		t.Fatalf("spiretest: trust domain: %v", err)
	}
	return td
}

func mkdirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("spiretest: %v", err)
		}
	}
}

// start writes the config with a fresh port, starts the process, registers
// its stop and waits until it is healthy.
func (s *Server) start(t testing.TB, opts Options) error {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	s.Port = port
	if err := os.WriteFile(s.ConfigPath, []byte(s.config(opts)), 0o600); err != nil {
		return err
	}
	p, err := startProc("spire-server", filepath.Join(s.bin, "spire-server"),
		[]string{"run", "-config", s.ConfigPath}, s.env, s.LogPath)
	if err != nil {
		return err
	}
	s.proc = p
	t.Cleanup(func() { stopOrFail(t, p) })
	return waitHealthy(p, s.SocketPath)
}

func (s *Server) config(opts Options) string {
	x509TTL, jwtTTL := opts.X509SVIDTTL, opts.JWTSVIDTTL
	if x509TTL == 0 {
		x509TTL = time.Hour
	}
	if jwtTTL == 0 {
		jwtTTL = 5 * time.Minute
	}
	data := filepath.Join(s.Dir, "data")
	return fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %s
    trust_domain = %s
    data_dir = %s
    log_level = %s
    default_x509_svid_ttl = %q
    default_jwt_svid_ttl = %q
    ca_ttl = "24h"
    experimental {
        cache_reload_interval = "1s"%s
    }
%s}

plugins {
    DataStore "sql" {
        plugin_data {
%s        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %s
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
%s}
`, s.Port, strconv.Quote(s.SocketPath), strconv.Quote(s.TrustDomain.Name()),
		strconv.Quote(data), strconv.Quote(logLevel(opts.LogLevel)), x509TTL, jwtTTL,
		eventsLine(opts.EventsBasedCache), indent(opts.Config, "    "),
		indent(dataStore(opts.DataStore, data), "            "),
		strconv.Quote(filepath.Join(data, "keys.json")),
		indent(strings.ReplaceAll(opts.Plugins, SocketPlaceholder, s.SocketPath), "    "))
}

func eventsLine(on bool) string {
	if on {
		return "\n        events_based_cache = true"
	}
	return ""
}

// dataStore returns the DataStore plugin_data lines: ds, or the default
// sqlite3 database in the data folder.
func dataStore(ds, data string) string {
	if strings.TrimSpace(ds) != "" {
		return ds
	}
	return "database_type = \"sqlite3\"\nconnection_string = " +
		strconv.Quote(filepath.Join(data, "datastore.sqlite3"))
}

// SocketPlaceholder in Options.Plugins is replaced by the server's local API
// socket path, which is only chosen when the server starts — for plugins
// that talk back to the server (the agentid composer's server_api_socket).
const SocketPlaceholder = "@SERVER_SOCKET@"

func logLevel(l string) string {
	if l == "" {
		return "DEBUG"
	}
	return l
}

// stopOrFail stops p and fails the test if it had to be killed.
func stopOrFail(t testing.TB, p *proc) {
	if err := p.Stop(); err != nil {
		t.Errorf("spiretest: %v", err)
	}
}

// waitHealthy polls the gRPC health service on socket, as `spire-server
// healthcheck` and `spire-agent healthcheck` do, until it reports SERVING;
// it gives up at once if the process exits.
func waitHealthy(p *proc, socket string) error {
	ctx := context.Background()
	return p.WaitReady(ctx, startTimeout, func() error { return devstack.CheckHealth(ctx, socket) })
}

// Signal sends sig to the server, e.g. syscall.SIGUSR1 to make plugins
// configured with plugin_data_file re-read it.
func (s *Server) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := s.proc.Signal(sig); err != nil {
		t.Fatalf("spiretest: signal spire-server: %v", err)
	}
}

// Run runs `spire-server <args>` against this server, adding
// `-socketPath <SocketPath>` after the subcommand words (before the first
// argument that starts with "-"), and returns its standard output. It fails
// the test with the output if the command fails. Example:
//
//	s.Run(t, "entry", "show", "-spiffeID", "spiffe://example.org/workload/me")
func (s *Server) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.run(args...)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	return out
}

func (s *Server) run(args ...string) (string, error) {
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") {
		i++
	}
	full := append(append(args[:i:i], "-socketPath", s.SocketPath), args[i:]...)
	cmd := exec.Command(filepath.Join(s.bin, "spire-server"), full...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("spire-server %s: %w\nstdout:\n%s\nstderr:\n%s",
			strings.Join(full, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Dial returns a gRPC connection to the server's local API socket (for the
// spire-api-sdk clients, e.g. entryv1.NewEntryClient). The local socket
// needs no TLS. The connection is closed when the test ends.
func (s *Server) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+s.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("spiretest: dial spire-server: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Pid is the process ID of the running spire-server (for measurements of
// its CPU and memory in /proc).
func (s *Server) Pid() int { return s.proc.Pid() }

// Crash kills the server with SIGKILL (no shutdown of any kind) and waits
// until it is gone.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	if err := s.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("spiretest: kill spire-server: %v", err)
	}
	<-s.proc.Done()
}

// Restart starts the server again after Crash (or an exit), with the same
// options, folders, datastore and socket path, on a fresh port, and waits
// until it is healthy. Clients of the socket reconnect by themselves;
// agents, which know the port, do not.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(t, s.opts); err != nil {
		t.Fatalf("spiretest: restart spire-server: %v", err)
	}
}
