package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/agentid/agentid/internal/hclconf"
	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// mcpBlock is the mcp { … } block as written.
type mcpBlock struct {
	Listen               string            `hcl:"listen"`
	Resource             string            `hcl:"resource"`
	Path                 string            `hcl:"path,optional"`
	Upstream             string            `hcl:"upstream,optional"`
	UpstreamCommand      []string          `hcl:"upstream_command,optional"`
	UpstreamEnv          map[string]string `hcl:"upstream_env,optional"`
	UpstreamDir          string            `hcl:"upstream_dir,optional"`
	StderrLogBytes       int               `hcl:"stderr_log_bytes,optional"`
	MaxSessionsPerTask   *int              `hcl:"max_sessions_per_task,optional"`
	SessionIdleTimeout   string            `hcl:"session_idle_timeout,optional"`
	Plaintext            bool              `hcl:"plaintext,optional"`
	ScopesSupported      []string          `hcl:"scopes_supported,optional"`
	ResourceName         string            `hcl:"resource_name,optional"`
	AuthorizationServers []string          `hcl:"authorization_servers,optional"`
	UpstreamHeader       *struct {
		Name      string `hcl:"name"`
		ValueFile string `hcl:"value_file,optional"`
		ValueEnv  string `hcl:"value_env,optional"`
		Prefix    string `hcl:"prefix,optional"`
	} `hcl:"upstream_header,block"`
}

// MCPConfig configures the MCP gateway.
type MCPConfig struct {
	// Listen is the gateway's address. It serves TLS with the verifier's
	// SVID (SPIFFE mTLS for agents that present one, JWT-SVID bearers
	// otherwise) unless Plaintext.
	Listen string
	// Plaintext serves plain HTTP (bearer JWT-SVIDs only): for loopback,
	// or behind a TLS-terminating load balancer.
	Plaintext bool
	// Gateway is the gateway's configuration (without Log, Transport,
	// and without UpstreamValue until Load).
	Gateway mcpgw.Config

	headerFile, headerEnv, headerPrefix string
	headerAt                            func(error) error // places an error at the key in the file
}

// LoadSecrets reads the upstream credential (upstream_header's value_file
// or value_env) into Gateway.UpstreamValue; the daemon calls it when it
// starts. A value_file is read again when it changes
// (Gateway.UpstreamValueFunc, see secretFile), its changes and faults
// logged to slog.Default(). Errors name the key's file:line:col.
func (mc *MCPConfig) LoadSecrets() error { return mc.loadSecrets(slog.Default()) }

func (mc *MCPConfig) loadSecrets(log *slog.Logger) error {
	if mc.Gateway.UpstreamHeader == "" {
		return nil
	}
	if mc.headerFile != "" {
		sf, err := newSecretFile(mc.headerFile, mc.headerPrefix, log)
		if err != nil {
			return mc.headerAt(err)
		}
		mc.Gateway.UpstreamValue, mc.Gateway.UpstreamValueFunc = sf.Value(), sf.Value
		return nil
	}
	v, err := upstreamValue(mc.headerFile, mc.headerEnv)
	if err != nil {
		return mc.headerAt(err)
	}
	mc.Gateway.UpstreamValue = mc.headerPrefix + v
	return nil
}

// maxSessionsPerTask is the largest max_sessions_per_task: the sessions
// the gateway remembers for all tasks together.
const maxSessionsPerTask = 1 << 16

// childEnvKeys are the variables a stdio child inherits from the
// verifier; everything else it gets from upstream_env.
var childEnvKeys = []string{"PATH", "HOME"}

func (cfg *Config) buildMCP(raw *fileConfig) error {
	m := raw.MCP
	if m == nil {
		return nil
	}
	at := func(key string, err error) error { return hclconf.At(raw.body, "mcp."+key, err) }
	mc := &MCPConfig{Listen: m.Listen, Plaintext: m.Plaintext, Gateway: mcpgw.Config{
		Resource: m.Resource, Path: m.Path, Dir: m.UpstreamDir, StderrBytes: m.StderrLogBytes,
		ScopesSupported: m.ScopesSupported, ResourceName: m.ResourceName, AuthorizationServers: m.AuthorizationServers,
	}}
	u, err := url.Parse(m.Resource)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
		return at("resource", fmt.Errorf("mcp.resource %q: want an absolute URI without a fragment (RFC 8707), e.g. \"https://files.example.org/mcp\"", m.Resource))
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		return at("path", fmt.Errorf("mcp.path %q: want an absolute path such as \"/mcp\"", m.Path))
	}
	switch {
	case m.Upstream != "" && len(m.UpstreamCommand) > 0:
		return at("upstream_command", errors.New("mcp: give either upstream (a Streamable HTTP server) or upstream_command (a stdio server), not both"))
	case m.Upstream != "":
		u, err := url.Parse(m.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return at("upstream", fmt.Errorf("mcp.upstream %q: want the http(s) URL of the MCP endpoint, e.g. \"http://127.0.0.1:3001/mcp\"", m.Upstream))
		}
		mc.Gateway.Upstream = u
		if len(m.UpstreamEnv) > 0 || m.UpstreamDir != "" {
			return at("upstream_env", errors.New("mcp: upstream_env and upstream_dir are for upstream_command"))
		}
	case len(m.UpstreamCommand) > 0:
		if m.UpstreamCommand[0] == "" {
			return at("upstream_command", errors.New("mcp.upstream_command: the program name is empty"))
		}
		mc.Gateway.Command = m.UpstreamCommand
		mc.Gateway.Env = childEnv(m.UpstreamEnv)
		if m.UpstreamHeader != nil {
			return errors.New("mcp: upstream_header is for an upstream URL; a stdio child takes its credential from upstream_env")
		}
	default:
		return errors.New("mcp: upstream (a Streamable HTTP MCP server's URL) or upstream_command (a stdio MCP server) is required")
	}
	if m.StderrLogBytes < 0 {
		return at("stderr_log_bytes", fmt.Errorf("mcp.stderr_log_bytes %d: want a positive size in bytes", m.StderrLogBytes))
	}
	if n := m.MaxSessionsPerTask; n != nil {
		if *n < 1 || *n > maxSessionsPerTask {
			return at("max_sessions_per_task", fmt.Errorf("mcp.max_sessions_per_task %d: want 1 to %d (default %d)", *n, maxSessionsPerTask, mcpgw.DefaultMaxSessionsPerTask))
		}
		mc.Gateway.MaxSessionsPerTask = *n
	}
	if m.SessionIdleTimeout != "" {
		d, err := time.ParseDuration(m.SessionIdleTimeout)
		if err != nil || d <= 0 {
			return at("session_idle_timeout", fmt.Errorf("mcp.session_idle_timeout %q: want a positive duration such as \"30m\"", m.SessionIdleTimeout))
		}
		mc.Gateway.SessionIdleTimeout = d
	}
	if h := m.UpstreamHeader; h != nil {
		if err := checkHeaderName(h.Name); err != nil {
			return at("upstream_header.name", err)
		}
		if (h.ValueFile == "") == (h.ValueEnv == "") {
			return at("upstream_header.name", errors.New("mcp.upstream_header: give one of value_file and value_env"))
		}
		mc.Gateway.UpstreamHeader = http.CanonicalHeaderKey(h.Name)
		mc.headerFile, mc.headerEnv, mc.headerPrefix = h.ValueFile, h.ValueEnv, h.Prefix
		key := "upstream_header.value_file"
		if h.ValueEnv != "" {
			key = "upstream_header.value_env"
		}
		mc.headerAt = func(err error) error { return at(key, err) }
	}
	if !m.Plaintext && cfg.Files != nil && cfg.Files.SVIDCert == "" {
		return at("listen", errors.New("mcp serves TLS with the verifier's own SVID: set files.svid_cert and files.svid_key, use workload_api, or set plaintext = true (loopback, or behind a TLS terminator)"))
	}
	cfg.MCP = mc
	return nil
}

// upstreamValue reads the injected credential from a file (trailing
// newlines dropped) or an environment variable of the verifier.
func upstreamValue(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("mcp.upstream_header.value_file: %w", err)
		}
		return checkHeaderValue(strings.TrimRight(string(b), "\r\n"), "value_file "+file)
	default:
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("mcp.upstream_header.value_env: %s is not set in the verifier's environment", env)
		}
		return checkHeaderValue(v, "value_env "+env)
	}
}

func checkHeaderName(name string) error {
	if name == "" || strings.ContainsAny(name, " :\t\r\n") {
		return fmt.Errorf("mcp.upstream_header.name %q: want a header name such as \"Authorization\"", name)
	}
	return nil
}

func checkHeaderValue(v, from string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("mcp.upstream_header.%s is empty", from)
	}
	for _, c := range []byte(v) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return "", fmt.Errorf("mcp.upstream_header.%s holds a control character, which a header cannot carry", from)
		}
	}
	return v, nil
}

// childEnv is a stdio child's environment: PATH and HOME from the
// verifier, then upstream_env (sorted, so the order is stable).
func childEnv(extra map[string]string) []string {
	var env []string
	for _, k := range childEnvKeys {
		if _, set := extra[k]; set {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// listenMCP serves the MCP gateway: TLS with the verifier's SVID, client
// certificates requested but optional (an agent presents its X.509-SVID
// or a JWT-SVID bearer; the pipeline verifies either), or plain HTTP.
func (d *Daemon) listenMCP() error {
	mc := d.cfg.MCP
	if mc == nil {
		return nil
	}
	gc := mc.Gateway
	gc.Log = d.log.With("frontend", mcpgw.Frontend)
	g, err := mcpgw.New(d.v, gc)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, g.Close)
	d.mcp = g
	for _, c := range []struct {
		name, help string
		f          func() int64
	}{
		{"agentid_mcp_dropped_responses_total", "Responses of the upstream MCP server the gateway dropped: on a GET stream, or under an id it did not send.", g.DroppedResponses},
		{"agentid_mcp_suppressed_notifications_total", "Messages of the upstream MCP server kept from the agent: resource updates the task may not read, envelopes clients read differently.", g.SuppressedNotifications},
		{"agentid_mcp_forgotten_sessions_deleted_total", "MCP sessions the gateway forgot (per-task cap, bound of all, idle) and ended upstream with DELETE.", g.ForgottenSessionsDeleted},
	} {
		d.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.f()) }))
	}
	if len(gc.Command) > 0 {
		d.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "agentid_mcp_child_starts_total", Help: "Starts of the MCP gateway's stdio server (1 plus its restarts).",
		}, func() float64 { return float64(g.ChildStarts()) }))
	}
	l, err := net.Listen("tcp", mc.Listen)
	if err != nil {
		return fmt.Errorf("mcp listen %s: %w", mc.Listen, err)
	}
	if mc.Plaintext {
		d.log.Warn("the MCP gateway serves plain HTTP (plaintext = true): bearer tokens cross the network in the clear unless a TLS terminator is in front", "listen", mc.Listen)
	} else {
		if d.svids == nil {
			l.Close()
			return errors.New("mcp: serving TLS needs the verifier's own SVID")
		}
		tc := tlsconfig.TLSServerConfig(d.svids)
		tc.ClientAuth = tls.RequestClientCert // verified by the pipeline (verifier.HTTPCredential)
		l = tls.NewListener(l, tc)
	}
	d.addrs["mcp"] = l.Addr()
	d.httpServer(l, g)
	return nil
}
