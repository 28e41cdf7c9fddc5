package spiretest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AgentOptions configure a SPIRE agent. The zero value is an agent with the
// unix workload attestor.
type AgentOptions struct {
	// Plugins holds extra HCL blocks for the agent's `plugins { }`, e.g. a
	// WorkloadAttestor rendered by PluginBlock.
	Plugins string
	// Config holds extra HCL lines for the `agent { }` block (e.g.
	// authorized_delegates). It already has an
	// `experimental { sync_interval = "1s" }` block.
	Config string
	// LogLevel is the agent log level; default "DEBUG".
	LogLevel string
	// Env holds extra KEY=value environment variables for the agent and its
	// plugins.
	Env []string
	// NodeName is the last path segment of the agent's NodeID; default
	// "node-<n>" for the server's n-th agent. Servers sharing a datastore
	// (Options.DataStore) need distinct names for their agents.
	NodeName string
}

// Agent is a running spire-agent attested to a Server with a join token.
// Its fields are read-only.
type Agent struct {
	// Dir is the agent's folder: agent.conf, agent.log, data/, public/, admin/.
	Dir string
	// SocketPath is the Workload API socket (absolute path); see Addr.
	SocketPath string
	// AdminSocketPath is the admin API socket (Delegated Identity, debug).
	AdminSocketPath string
	// ConfigPath and LogPath are the agent's config and log files; the log
	// is appended to across restarts.
	ConfigPath, LogPath string
	// NodeID is spiffe://<td>/agent/node-<n> (or /agent/<NodeName>), the
	// node alias that the join token registers for this agent: the parent
	// ID of its workload entries.
	// (The agent's own SVID is spiffe://<td>/spire/agent/join_token/<token>.)
	NodeID spiffeid.ID

	owner testing.TB // the test that started the agent: it stops it
	bin   string
	env   []string

	mu   sync.Mutex
	proc *proc
}

// StartAgent starts a spire-agent attested to s with a new join token for
// NodeID, with insecure bootstrap, a 1 s sync interval, a disk key manager
// (so that Restart needs no new token) and the unix workload attestor plus
// opts.Plugins. It returns once the agent reports healthy. The agent is
// stopped with SIGTERM when the test ends; if the test failed, the tail of
// its log is printed.
func (s *Server) StartAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	n := s.agents.Add(1)
	dir := filepath.Join(s.Root, fmt.Sprintf("agent%d", n))
	a := &Agent{
		Dir:             dir,
		SocketPath:      filepath.Join(dir, "public", "api.sock"),
		AdminSocketPath: filepath.Join(dir, "admin", "admin.sock"),
		ConfigPath:      filepath.Join(dir, "agent.conf"),
		LogPath:         filepath.Join(dir, "agent.log"),
		owner:           t,
		bin:             filepath.Join(s.bin, "spire-agent"),
		env:             procEnv(filepath.Join(s.Root, "tmp"), opts.Env),
	}
	name := opts.NodeName
	if name == "" {
		name = fmt.Sprintf("node-%d", n)
	}
	var err error
	a.NodeID, err = spiffeid.FromSegments(s.TrustDomain, "agent", name)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	mkdirs(t, filepath.Join(dir, "data"), filepath.Join(dir, "public"), filepath.Join(dir, "admin"))
	if err := os.WriteFile(a.ConfigPath, []byte(a.config(s, opts)), 0o600); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	dumpLogOnFailure(t, "spire-agent "+a.NodeID.String(), a.LogPath)
	a.start(t, "-joinToken", s.joinToken(t, a.NodeID))
	return a
}

// joinToken generates a single-use join token that attests an agent as id.
func (s *Server) joinToken(t testing.TB, id spiffeid.ID) string {
	t.Helper()
	out := s.Run(t, "token", "generate", "-spiffeID", id.String(), "-ttl", "600")
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok {
		t.Fatalf("spiretest: unexpected `token generate` output %q", out)
	}
	return token
}

func (a *Agent) config(s *Server, opts AgentOptions) string {
	return fmt.Sprintf(`agent {
    data_dir = %s
    log_level = %s
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %s
    admin_socket_path = %s
    trust_domain = %s
    insecure_bootstrap = true
    experimental {
        sync_interval = "1s"
    }
%s}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = %s
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            # unix:path:<binary> selectors, so that tests can register a
            # daemon by its executable; never hash the binary.
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
%s}
`, strconv.Quote(filepath.Join(a.Dir, "data")), strconv.Quote(logLevel(opts.LogLevel)), s.Port,
		strconv.Quote(a.SocketPath), strconv.Quote(a.AdminSocketPath),
		strconv.Quote(s.TrustDomain.Name()), indent(opts.Config, "    "),
		strconv.Quote(filepath.Join(a.Dir, "data")), indent(opts.Plugins, "    "))
}

// start runs the agent with extra arguments, registers its stop with the
// test that started the agent (not t, which may be a subtest) and waits
// until it is healthy.
func (a *Agent) start(t testing.TB, args ...string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	p, err := startProc("spire-agent", a.bin, append([]string{"run", "-config", a.ConfigPath}, args...), a.env, a.LogPath)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	a.proc = p
	a.owner.Cleanup(func() { stopOrFail(a.owner, p) })
	if err := waitHealthy(p, a.SocketPath); err != nil {
		t.Fatalf("spiretest: agent %s: %v", a.NodeID, err)
	}
}

// Stop stops the agent with SIGTERM (SIGKILL after 10 s, which fails the
// test). Stopping a stopped agent does nothing.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		stopOrFail(t, a.proc)
	}
}

// Restart stops the agent and starts it again on the same data folder: it
// keeps its SVID, key and cached entries there, so it needs no new join
// token, keeps its NodeID and serves its workloads' SVIDs as soon as it is
// healthy again, which is when Restart returns.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Stop(t)
	a.start(t)
}

// Pid is the process ID of the running spire-agent (for measurements of
// its memory in /proc).
func (a *Agent) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc.Pid()
}
