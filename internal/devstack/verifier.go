package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// DefaultJWTAudience is the audience the stack's verifiers accept on
// JWT-SVIDs unless VerifierOptions.JWTAudiences says otherwise.
const DefaultJWTAudience = "dev"

// VerifierOptions configure an agentid-verifier started by
// [Stack.StartVerifier].
type VerifierOptions struct {
	// Name names its files (<Dir>/verifier/<Name>.hcl, logs/<Name>.log,
	// verifier/<Name>-audit.log): letters, digits, '.', '_' and '-'; unique
	// in the stack. Default "verifier-<n>".
	Name string
	// PolicyDir is the HCL policy directory (required); the verifier
	// reloads it when a file changes.
	PolicyDir string
	// ProxyUpstream, when set, runs the SPIFFE mTLS reverse proxy in front of
	// this http(s) URL on Verifier.ProxyAddr.
	ProxyUpstream string
	// MCPPaths are the proxy's MCP endpoints (tool calls become mcp actions).
	MCPPaths []string
	// JWTAudiences are the audiences accepted on JWT-SVIDs; default
	// [DefaultJWTAudience].
	JWTAudiences []string
	// Registrars are the registrars' mTLS addresses whose liveness feed it
	// watches, in order of preference; default the stack's RegistrarAddr.
	Registrars []string
	// CheckpointInterval is the audit log's checkpoint_interval (default
	// the verifier's, 1 min): a receipt proves once a checkpoint covers it.
	CheckpointInterval time.Duration
	// MCP, when set, runs the verifier's MCP gateway (docs/mcp.md) on a
	// free port of 127.0.0.1, in plain HTTP (JWT-SVID bearers), at
	// Verifier.MCPURL.
	MCP *MCPGateway
}

// MCPGateway is the mcp { … } block of a verifier: the gateway in front of
// a Streamable HTTP MCP server (Upstream) or of a stdio one it runs
// (Command).
type MCPGateway struct {
	// Resource is the gateway's resource URI, the audience of the
	// JWT-SVIDs it accepts (required).
	Resource string
	// Upstream is the URL of a Streamable HTTP MCP endpoint; Command the
	// argv of a stdio MCP server. Exactly one is set.
	Upstream string
	Command  []string
}

// Verifier is a running agentid-verifier. Its fields are read-only.
type Verifier struct {
	// Name, ConfigPath, LogPath, AuditPath and PolicyDir: its name, files
	// and policy directory.
	Name, ConfigPath, LogPath, AuditPath, PolicyDir string
	// ProxyAddr is the mTLS proxy's address, 127.0.0.1:port ("" without
	// ProxyUpstream); ProxyURL is "https://" + ProxyAddr.
	ProxyAddr, ProxyURL string
	// CheckURL is the check API, http://127.0.0.1:port/v1/check.
	CheckURL string
	// MetricsURL is the metrics listener, http://127.0.0.1:port: /metrics,
	// /healthz and /readyz.
	MetricsURL string
	// MCPURL is the MCP gateway's endpoint, http://127.0.0.1:port/<path of
	// the resource> ("" without VerifierOptions.MCP).
	MCPURL string

	proc *Process
}

// Process is the verifier's process.
func (v *Verifier) Process() *Process { return v.proc }

// Stop stops the verifier (SIGTERM) and waits for it; the stack's Stop
// does it too. Its files stay until the stack stops.
func (v *Verifier) Stop() error { return v.proc.Stop() }

var verifierName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// StartVerifier starts an agentid-verifier with its SVID from the stack's
// agent (spiffe://<td>/agentid/verifier), a check API and metrics on free
// ports of 127.0.0.1 and, with opts.ProxyUpstream, the mTLS reverse proxy.
// It returns once /readyz answers 200 (a policy is loaded). A policy
// directory that does not load is an error showing the verifier's log.
func (s *Stack) StartVerifier(ctx context.Context, opts VerifierOptions) (*Verifier, error) {
	if opts.PolicyDir == "" {
		return nil, errors.New("devstack: StartVerifier: PolicyDir is required")
	}
	policyDir, err := filepath.Abs(opts.PolicyDir)
	if err != nil {
		return nil, err
	}
	if opts.ProxyUpstream != "" {
		if u, err := url.Parse(opts.ProxyUpstream); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("devstack: StartVerifier: ProxyUpstream %q is not an http(s) URL", opts.ProxyUpstream)
		}
	}
	var mcpPath string
	if m := opts.MCP; m != nil {
		u, err := url.Parse(m.Resource)
		if err != nil || u.Scheme == "" || u.Host == "" || (m.Upstream == "") == (len(m.Command) == 0) {
			return nil, fmt.Errorf("devstack: StartVerifier: MCP needs a resource URI (%q) and one of Upstream and Command", m.Resource)
		}
		if mcpPath = u.Path; mcpPath == "" || mcpPath == "/" {
			mcpPath = "/mcp"
		}
	}
	if len(opts.JWTAudiences) == 0 {
		opts.JWTAudiences = []string{DefaultJWTAudience}
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil, errors.New("devstack: stopped")
	}
	if opts.Name == "" {
		for n := len(s.names) + 1; ; n++ {
			if name := fmt.Sprintf("verifier-%d", n); !s.names[name] {
				opts.Name = name
				break
			}
		}
	}
	if !verifierName.MatchString(opts.Name) || s.names[opts.Name] {
		s.mu.Unlock()
		return nil, fmt.Errorf("devstack: StartVerifier: name %q is invalid or taken", opts.Name)
	}
	s.names[opts.Name] = true
	s.mu.Unlock()

	v := &Verifier{
		Name:       opts.Name,
		ConfigPath: s.path("verifier", opts.Name+".hcl"),
		LogPath:    filepath.Join(s.LogDir, opts.Name+".log"),
		AuditPath:  s.path("verifier", opts.Name+"-audit.log"),
		PolicyDir:  policyDir,
	}
	start := time.Now()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a picked port can be taken before the bind
		var ports [4]int
		for i := range ports {
			if ports[i], err = FreePort(); err != nil {
				return nil, err
			}
		}
		if opts.ProxyUpstream != "" {
			v.ProxyAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
			v.ProxyURL = "https://" + v.ProxyAddr
		}
		v.CheckURL = fmt.Sprintf("http://127.0.0.1:%d/v1/check", ports[1])
		v.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
		if opts.MCP != nil {
			v.MCPURL = fmt.Sprintf("http://127.0.0.1:%d%s", ports[3], mcpPath)
		}
		if err := os.WriteFile(v.ConfigPath, []byte(s.verifierConfig(v, opts, ports[0], ports[1], ports[2], ports[3])), 0o600); err != nil {
			return nil, err
		}
		p, err := StartProcess(opts.Name, filepath.Join(s.BinDir, VerifierBin), []string{"-config", v.ConfigPath}, s.env, v.LogPath)
		if err != nil {
			return nil, err
		}
		if err := s.track(p); err != nil {
			return nil, err
		}
		v.proc = p
		lastErr = p.WaitReady(ctx, StartTimeout, func() error { return v.ready(ctx) })
		if lastErr == nil {
			go s.watch(p)
			what := "check API " + v.CheckURL
			if v.ProxyAddr != "" {
				what = "proxy " + v.ProxyURL + " → " + opts.ProxyUpstream + ", " + what
			}
			if v.MCPURL != "" {
				what = "MCP gateway " + v.MCPURL + ", " + what
			}
			s.logf("agentid-verifier %s ready in %v (%s)", opts.Name, time.Since(start).Round(time.Millisecond), what)
			return v, nil
		}
		_ = p.Stop()
		if !logContains(v.LogPath, "address already in use") {
			break
		}
	}
	s.mu.Lock()
	delete(s.names, opts.Name)
	s.mu.Unlock()
	return nil, lastErr
}

// ready: /readyz answers 200 and the front-ends accept connections.
func (v *Verifier) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.MetricsURL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/readyz: %s", v.MetricsURL, resp.Status)
	}
	u, _ := url.Parse(v.CheckURL)
	if err := dialCheck("tcp", u.Host); err != nil {
		return err
	}
	if v.ProxyAddr != "" {
		if err := dialCheck("tcp", v.ProxyAddr); err != nil {
			return err
		}
	}
	if v.MCPURL != "" {
		u, _ := url.Parse(v.MCPURL)
		return dialCheck("tcp", u.Host)
	}
	return nil
}
