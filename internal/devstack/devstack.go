// Package devstack runs a complete local agentid deployment for development
// and demos — what `agentid dev` starts, like `vault server -dev`: a real
// SPIRE server and agent on loopback with the agentid composer and attestor
// plugins, an agentid-registrar (operator socket and SPIFFE mTLS listener,
// permissive issuance policy), an agentid-verifier (check API and metrics,
// permissive policy) and a manifest directory for `agentid run`, all in one
// temporary directory that Stop removes.
//
//	st, err := devstack.Start(ctx, devstack.Options{Log: os.Stderr})
//	if err != nil { … }
//	defer st.Stop()
//	// st.ServerSocket, st.AgentSocket, st.NodeID, st.ManifestDir, st.RegistrarAddr, …
//	kb, err := st.StartVerifier(devstack.VerifierOptions{
//		Name: "kb", PolicyDir: "examples/policies", ProxyUpstream: "http://127.0.0.1:8080"})
//
// The daemons get their SVIDs from the Workload API through entries that
// select their executables (unix:path:<binary>): spiffe://<td>/agentid/registrar
// and spiffe://<td>/agentid/verifier. Every child process is stopped with
// SIGTERM by Stop (and, on Linux, gets SIGTERM if the program dies first).
// Readiness is polled with deadlines: gRPC health on the SPIRE sockets, a
// connect on the registrar's listeners and /readyz on the verifiers.
package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// Options configure Start. The zero value finds every binary by itself and
// works in a new temporary directory.
type Options struct {
	// SpireBin is the folder holding spire-server and spire-agent; default
	// [FindSpireBin]: $AGENTID_SPIRE_BIN or the repository's
	// .cache/spire/v1.13.3/bin (`make spire`).
	SpireBin string
	// BinDir is the folder holding agentid-registrar and agentid-verifier
	// (and usually agentid); default [FindBinDir]: the running executable's
	// folder, or the repository's bin/ (`make build`).
	BinDir string
	// PluginDir is the folder holding agentid-attestor and
	// agentid-composer; default BinDir if it holds them, else
	// [FindPluginDir].
	PluginDir string
	// Dir is the working directory (configs, data, sockets, logs). It must
	// not exist or be empty, and stay short: unix socket paths are limited
	// to 107 bytes. Default: a new directory under $TMPDIR.
	Dir string
	// Keep keeps Dir when the stack stops.
	Keep bool
	// Witness runs an audit witness (`agentid audit witness serve`, from
	// BinDir) on a free port of 127.0.0.1 before the registrar and the
	// verifiers, with a new key; every registrar's and verifier's decision
	// log is then cosigned by it (audit.witness_url, audit.witness_key).
	Witness bool
	// TrustDomain is the trust domain; default "example.org".
	TrustDomain string
	// Port is the SPIRE server's TCP port on 127.0.0.1; 0 picks a free one.
	// A taken port is a *PortInUseError.
	Port int
	// LogLevel is SPIRE's log level; default "INFO". The daemons log at info.
	LogLevel string
	// Log receives one line per step ("spire-server ready …"); nil: none.
	Log io.Writer
	// RecreateQuietPeriod and MaxJWTSVIDTTL are the registrars'
	// recreate_quiet_period and max_jwt_svid_ttl; zero: their defaults
	// (docs/registrar.md). Tests of a task ID revoked and created again
	// shorten both.
	RecreateQuietPeriod, MaxJWTSVIDTTL time.Duration
}

// Stack is a running development stack. Its fields are read-only.
type Stack struct {
	// Dir is the working directory.
	Dir string
	// TrustDomain is the trust domain name, e.g. "example.org".
	TrustDomain string
	// ServerSocket is the SPIRE server's local API socket (Entry API, `agentid
	// task … --server-socket`).
	ServerSocket string
	// ServerPort is the SPIRE server's TCP port on 127.0.0.1.
	ServerPort int
	// AgentSocket is the SPIRE agent's Workload API socket (a path; the
	// go-spiffe address is "unix://" + AgentSocket).
	AgentSocket string
	// NodeID is the SPIRE agent's node alias, the parent ID of task entries:
	// spiffe://<td>/agentid/dev-node.
	NodeID string
	// ManifestDir is the attestor's manifest directory (0750), for
	// `agentid run --manifest-dir`.
	ManifestDir string
	// IssuancePolicy is the registrar's issuance policy file (permissive),
	// also usable with `agentid task create --policy`.
	IssuancePolicy string
	// RegistrarID is the registrar's SPIFFE ID, spiffe://<td>/agentid/registrar.
	RegistrarID string
	// RegistrarAddr is the registrar's SPIFFE mTLS listener, 127.0.0.1:port
	// (DelegateTask).
	RegistrarAddr string
	// RegistrarOperatorSocket is the registrar's operator socket (every RPC).
	RegistrarOperatorSocket string
	// Registrar is the default registrar (RegistrarAddr, RegistrarOperatorSocket).
	Registrar *Registrar
	// VerifierID is the verifiers' SPIFFE ID, spiffe://<td>/agentid/verifier.
	VerifierID string
	// Verifier is the default verifier (check API and metrics, policy
	// directory <Dir>/verifier/policies).
	Verifier *Verifier
	// VerifierCheckURL is the default verifier's check API:
	// http://127.0.0.1:port/v1/check.
	VerifierCheckURL string
	// SamplePrompt is a system prompt file the printed commands digest.
	SamplePrompt string
	// BundlePath is the trust bundle (PEM, `spire-server bundle show`) as
	// it was when the stack started: for `agentid audit verify --bundle`.
	BundlePath string
	// Witness is the audit witness (Options.Witness), else nil.
	Witness *Witness
	// LogDir holds one log file per process.
	LogDir string
	// SpireBin, BinDir and PluginDir are the folders the binaries came from.
	SpireBin, BinDir, PluginDir string

	keep, createdDir bool
	witnessWanted    bool
	logLevel         string
	quiet, maxJWT    time.Duration // Options.RecreateQuietPeriod, MaxJWTSVIDTTL
	log              io.Writer
	env              []string // environment of the children

	stopOnce sync.Once
	stopErr  error // set by the first Stop

	mu         sync.Mutex
	server     *Process        // the running spire-server
	procs      []*Process      // in start order
	names      map[string]bool // verifier names in use
	stopping   bool
	done       chan struct{} // closed on the first unexpected exit, or by Stop
	doneClosed bool
	failure    error
}

// Dev identities.
const (
	nodePath      = "/agentid/dev-node"
	registrarPath = "/agentid/registrar"
	verifierPath  = "/agentid/verifier"
)

// Start starts the stack and returns once every component is ready. On
// error everything started is stopped and the files removed (unless Keep).
// Missing binaries are a *NotFoundError, a taken Port a *PortInUseError.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s := &Stack{keep: opts.Keep, witnessWanted: opts.Witness, log: opts.Log, logLevel: opts.LogLevel, done: make(chan struct{}), names: map[string]bool{},
		quiet: opts.RecreateQuietPeriod, maxJWT: opts.MaxJWTSVIDTTL}
	if s.logLevel == "" {
		s.logLevel = "INFO"
	}
	if err := s.resolve(opts); err != nil {
		return nil, err
	}
	if err := s.makeDir(opts.Dir); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		if s.keep {
			err = fmt.Errorf("%w\n(files kept in %s)", err, s.Dir)
		}
		return nil, err
	}
	return s, nil
}

// resolve finds the binaries, checks the trust domain and the port.
func (s *Stack) resolve(opts Options) error {
	td := opts.TrustDomain
	if td == "" {
		td = "example.org"
	}
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return fmt.Errorf("trust domain %q: %w", td, err)
	}
	s.TrustDomain = t.Name()
	s.NodeID = "spiffe://" + s.TrustDomain + nodePath
	s.RegistrarID = "spiffe://" + s.TrustDomain + registrarPath
	s.VerifierID = "spiffe://" + s.TrustDomain + verifierPath
	if s.SpireBin, err = FindSpireBin(opts.SpireBin); err != nil {
		return err
	}
	if s.BinDir, err = FindBinDir(opts.BinDir); err != nil {
		return err
	}
	switch {
	case opts.PluginDir != "":
		s.PluginDir, err = FindPluginDir(opts.PluginDir)
	case hasAll(s.BinDir, []string{AttestorBin, ComposerBin}) == "":
		s.PluginDir = s.BinDir
	default:
		s.PluginDir, err = FindPluginDir("")
	}
	if err != nil {
		return err
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("port %d: out of range", opts.Port)
	}
	if opts.Port != 0 {
		if err := checkPortFree(opts.Port); err != nil {
			return err
		}
		s.ServerPort = opts.Port
	} else if s.ServerPort, err = FreePort(); err != nil {
		return err
	}
	return nil
}

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// makeDir creates the working directory (or checks that a given one is
// empty) and its layout.
func (s *Stack) makeDir(dir string) error {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "agentid-dev-"); err != nil {
			return err
		}
		s.createdDir = true
	} else {
		if dir, err = filepath.Abs(dir); err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			s.createdDir = true
		case err != nil:
			return err
		case len(entries) > 0:
			return fmt.Errorf("%s is not empty: give a new or empty directory", dir)
		}
	}
	s.Dir = dir
	s.ServerSocket = s.path("server", "api.sock")
	s.AgentSocket = s.path("agent", "public", "api.sock")
	s.ManifestDir = s.path("tasks")
	s.IssuancePolicy = s.path("registrar", "issuance.hcl")
	s.RegistrarOperatorSocket = s.path("registrar", "operator.sock")
	s.SamplePrompt = s.path("prompt.txt")
	s.LogDir = s.path("logs")
	if n := len(s.AgentSocket); n > maxSocketPath-8 {
		s.removeFiles()
		return fmt.Errorf("directory %s is too long for unix sockets (%s is %d bytes, the limit is %d): choose a shorter one", dir, s.AgentSocket, n, maxSocketPath)
	}
	s.env = append(os.Environ(), "TMPDIR="+s.path("tmp")) // go-plugin's sockets
	for _, d := range []string{"server/data", "agent/data", "agent/public", "registrar", "verifier", "witness", "logs", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			s.removeFiles()
			return err
		}
	}
	// The manifest directory: not writable by group or others (the
	// attestor refuses it otherwise); 0750 lets a launcher group read it.
	err = os.Mkdir(s.ManifestDir, 0o750)
	if err == nil {
		err = os.Chmod(s.ManifestDir, 0o750) // whatever the umask
	}
	if err == nil {
		err = os.WriteFile(s.SamplePrompt, []byte(samplePrompt), 0o644)
	}
	if err != nil {
		s.removeFiles()
		return err
	}
	return nil
}

func (s *Stack) path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir}, elem...)...)
}

func (s *Stack) logf(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, "agentid dev: "+format+"\n", args...)
	}
}

// start brings the components up in order.
func (s *Stack) start(ctx context.Context) error {
	if err := s.startServer(ctx); err != nil {
		return err
	}
	if err := s.startAgent(ctx); err != nil {
		return err
	}
	for _, d := range []struct{ bin, path string }{{RegistrarBin, registrarPath}, {VerifierBin, verifierPath}} {
		bin, err := realPath(filepath.Join(s.BinDir, d.bin))
		if err != nil {
			return err
		}
		if _, err := s.CreateEntry(ctx, "spiffe://"+s.TrustDomain+d.path, "unix:path:"+bin); err != nil {
			return fmt.Errorf("register %s: %w", d.bin, err)
		}
	}
	if err := s.writeBundle(ctx); err != nil {
		return err
	}
	if s.witnessWanted {
		if err := s.startWitness(ctx); err != nil {
			return err
		}
	}
	if err := s.startRegistrar(ctx); err != nil {
		return err
	}
	policyDir := s.path("verifier", "policies")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "dev.hcl"), []byte(devVerifierPolicy(s.TrustDomain)), 0o600); err != nil {
		return err
	}
	v, err := s.StartVerifier(ctx, VerifierOptions{Name: "verifier", PolicyDir: policyDir})
	if err != nil {
		return err
	}
	s.Verifier, s.VerifierCheckURL = v, v.CheckURL
	return nil
}

// track records a started process so that Stop stops it.
func (s *Stack) track(p *Process) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		_ = p.Stop()
		return errors.New("devstack: stopped")
	}
	s.procs = append(s.procs, p)
	return nil
}

// watch closes done when p, which is ready, exits without having been
// asked to stop. (A start-up failure is Start's or StartVerifier's error.)
func (s *Stack) watch(p *Process) {
	<-p.Done()
	if p.stopRequested.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || s.doneClosed {
		return
	}
	_, err := p.Exited()
	s.failure = fmt.Errorf("%s (pid %d) exited: %v; last lines of %s:\n%s", p.Name, p.Pid(), err, p.LogPath, p.LogTail(20))
	s.doneClosed = true
	close(s.done)
}

func (s *Stack) startServer(ctx context.Context) error {
	composer, sum, err := plugin(filepath.Join(s.PluginDir, ComposerBin))
	if err != nil {
		return err
	}
	conf := s.path("server", "server.conf")
	if err := os.WriteFile(conf, []byte(s.serverConfig(composer, sum)), 0o600); err != nil {
		return err
	}
	start := time.Now()
	p, err := StartProcess(SpireServerBin, filepath.Join(s.SpireBin, SpireServerBin),
		[]string{"run", "-config", conf}, s.env, filepath.Join(s.LogDir, "spire-server.log"))
	if err != nil {
		return err
	}
	if err := s.track(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.server = p
	s.mu.Unlock()
	err = p.WaitReady(ctx, StartTimeout, func() error { return CheckHealth(ctx, s.ServerSocket) })
	if err != nil {
		if logContains(p.LogPath, "address already in use") {
			return &PortInUseError{Port: s.ServerPort, Err: err}
		}
		return err
	}
	go s.watch(p)
	s.logf("spire-server ready in %v (127.0.0.1:%d, %s)", time.Since(start).Round(time.Millisecond), s.ServerPort, s.ServerSocket)
	return nil
}

func (s *Stack) startAgent(ctx context.Context) error {
	attestor, sum, err := plugin(filepath.Join(s.PluginDir, AttestorBin))
	if err != nil {
		return err
	}
	token, err := s.joinToken(ctx)
	if err != nil {
		return err
	}
	conf := s.path("agent", "agent.conf")
	if err := os.WriteFile(conf, []byte(s.agentConfig(attestor, sum)), 0o600); err != nil {
		return err
	}
	start := time.Now()
	p, err := StartProcess(SpireAgentBin, filepath.Join(s.SpireBin, SpireAgentBin),
		[]string{"run", "-config", conf, "-joinToken", token}, s.env, filepath.Join(s.LogDir, "spire-agent.log"))
	if err != nil {
		return err
	}
	if err := s.track(p); err != nil {
		return err
	}
	if err := p.WaitReady(ctx, StartTimeout, func() error { return CheckHealth(ctx, s.AgentSocket) }); err != nil {
		return err
	}
	go s.watch(p)
	s.logf("spire-agent ready in %v (%s, node %s)", time.Since(start).Round(time.Millisecond), s.AgentSocket, s.NodeID)
	return nil
}

// plugin returns the plugin binary's real path and sha256 (plugin_checksum).
func plugin(path string) (real, sum string, err error) {
	if real, err = realPath(path); err != nil {
		return "", "", err
	}
	f, err := os.Open(real)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", err
	}
	return real, hex.EncodeToString(h.Sum(nil)), nil
}

// dial connects to the server's local API socket.
func (s *Stack) dial() (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+s.ServerSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// joinToken makes a single-use join token that attests the agent as NodeID.
func (s *Stack) joinToken(ctx context.Context) (string, error) {
	conn, err := s.dial()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tok, err := agentv1.NewAgentClient(conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{
		Ttl:     600,
		AgentId: &types.SPIFFEID{TrustDomain: s.TrustDomain, Path: nodePath},
	})
	if err != nil {
		return "", fmt.Errorf("join token: %w", err)
	}
	return tok.Value, nil
}

// CreateEntry registers a workload entry under the stack's node (parent ID
// NodeID) and returns its ID. Selectors are "type:value", e.g.
// "unix:path:/usr/local/bin/kb" or "unix:uid:1000"; the value may contain
// ':'. The entry reaches the agent about a second later.
func (s *Stack) CreateEntry(ctx context.Context, spiffeID string, selectors ...string) (string, error) {
	id, err := spiffeid.FromString(spiffeID)
	if err != nil {
		return "", err
	}
	entry := &types.Entry{
		SpiffeId: &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		ParentId: &types.SPIFFEID{TrustDomain: s.TrustDomain, Path: nodePath},
	}
	for _, sel := range selectors {
		typ, value, ok := strings.Cut(sel, ":")
		if !ok || typ == "" || value == "" {
			return "", fmt.Errorf("selector %q is not type:value", sel)
		}
		entry.Selectors = append(entry.Selectors, &types.Selector{Type: typ, Value: value})
	}
	conn, err := s.dial()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx,
		&entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{entry}})
	if err != nil {
		return "", fmt.Errorf("create entry: %w", err)
	}
	r := resp.Results[0]
	if codes.Code(r.Status.Code) != codes.OK {
		return "", fmt.Errorf("create entry %s: %v: %s", spiffeID, codes.Code(r.Status.Code), r.Status.Message)
	}
	return r.Entry.Id, nil
}

// RegisterBinary gives every process running the executable at path the
// SPIFFE ID spiffeID (an entry with the selector unix:path:<path>, symlinks
// resolved), e.g. for a demo service that fetches its SVID from AgentSocket.
func (s *Stack) RegisterBinary(ctx context.Context, spiffeID, path string) (string, error) {
	real, err := realPath(path)
	if err != nil {
		return "", err
	}
	return s.CreateEntry(ctx, spiffeID, "unix:path:"+real)
}

func (s *Stack) startRegistrar(ctx context.Context) error {
	if err := os.WriteFile(s.IssuancePolicy, []byte(issuancePolicy), 0o600); err != nil {
		return err
	}
	r, err := s.runRegistrar(ctx, "registrar", s.RegistrarOperatorSocket)
	if err != nil {
		return err
	}
	s.RegistrarAddr, s.Registrar = r.Addr, r
	return nil
}

// Registrar is an agentid-registrar of the stack. Its fields are read-only.
type Registrar struct {
	// Name names its files (<Dir>/registrar/<Name>.hcl, logs/<Name>.log).
	Name string
	// Addr is its SPIFFE mTLS listener, 127.0.0.1:port (DelegateTask,
	// WatchLiveness); OperatorSocket its operator socket (every RPC).
	Addr, OperatorSocket string
	// AuditPath is its audit log (<Dir>/registrar/<Name>-audit.log): every
	// task created, delegated, refused and revoked, signed as RegistrarID.
	AuditPath string

	proc *Process
}

// Process is the registrar's process.
func (r *Registrar) Process() *Process { return r.proc }

// StartRegistrar starts one more agentid-registrar on the same SPIRE server,
// issuance policy and SPIFFE ID as the stack's (registrars keep no state,
// so any number can run), with its own operator socket and mTLS listener.
// name: letters, digits, '.', '_' and '-', unique among the stack's
// registrars and verifiers; it must stay short (it names a unix socket).
func (s *Stack) StartRegistrar(ctx context.Context, name string) (*Registrar, error) {
	if !verifierName.MatchString(name) || name == "registrar" || len(name) > 16 {
		return nil, fmt.Errorf("devstack: StartRegistrar: name %q is invalid (at most 16 letters, digits, '.', '_', '-')", name)
	}
	s.mu.Lock()
	taken := s.names[name]
	s.names[name] = true
	s.mu.Unlock()
	if taken {
		return nil, fmt.Errorf("devstack: StartRegistrar: name %q is taken", name)
	}
	return s.runRegistrar(ctx, name, s.path("registrar", name+".sock"))
}

func (s *Stack) runRegistrar(ctx context.Context, name, operatorSocket string) (*Registrar, error) {
	conf := s.path("registrar", name+".hcl")
	start := time.Now()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a picked port can be taken before the bind
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r := &Registrar{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", port), OperatorSocket: operatorSocket,
			AuditPath: s.path("registrar", name+"-audit.log")}
		if err := os.WriteFile(conf, []byte(s.registrarConfig(port, operatorSocket, r.AuditPath)), 0o600); err != nil {
			return nil, err
		}
		logPath := filepath.Join(s.LogDir, name+".log")
		p, err := StartProcess(name, filepath.Join(s.BinDir, RegistrarBin), []string{"-config", conf}, s.env, logPath)
		if err != nil {
			return nil, err
		}
		if err := s.track(p); err != nil {
			return nil, err
		}
		r.proc = p
		lastErr = p.WaitReady(ctx, StartTimeout, func() error {
			if err := dialCheck("unix", operatorSocket); err != nil {
				return err
			}
			return dialCheck("tcp", r.Addr)
		})
		if lastErr == nil {
			go s.watch(p)
			s.logf("agentid-registrar %s ready in %v (%s, operator socket %s)", name, time.Since(start).Round(time.Millisecond), r.Addr, operatorSocket)
			return r, nil
		}
		if !logContains(logPath, "address already in use") {
			return nil, lastErr
		}
		_ = p.Stop()
	}
	return nil, lastErr
}

// StopServer stops the SPIRE server (SIGTERM) as an operator would; the
// stack does not take it for a failure. StartServer starts it again.
func (s *Stack) StopServer() error {
	s.mu.Lock()
	p := s.server
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop()
}

// StartServer starts the SPIRE server again after StopServer, on the same
// port, data directory and sockets; the agent and the daemons reconnect by
// themselves. It returns once the server answers its health check.
func (s *Stack) StartServer(ctx context.Context) error {
	if err := s.StopServer(); err != nil {
		return err
	}
	return s.startServer(ctx)
}

// Kill kills the registrar with SIGKILL, as a crash would.
func (r *Registrar) Kill() { r.proc.Kill() }

// RestartRegistrar starts the registrar again (killing it first if it
// runs) with the same configuration: the same operator socket and mTLS
// address. It returns once both listen.
func (s *Stack) RestartRegistrar(ctx context.Context, r *Registrar) error {
	r.proc.Kill()
	conf := s.path("registrar", r.Name+".hcl")
	p, err := StartProcess(r.Name, filepath.Join(s.BinDir, RegistrarBin), []string{"-config", conf}, s.env, filepath.Join(s.LogDir, r.Name+".log"))
	if err != nil {
		return err
	}
	if err := s.track(p); err != nil {
		return err
	}
	r.proc = p
	if err := p.WaitReady(ctx, StartTimeout, func() error {
		if err := dialCheck("unix", r.OperatorSocket); err != nil {
			return err
		}
		return dialCheck("tcp", r.Addr)
	}); err != nil {
		return err
	}
	go s.watch(p)
	return nil
}

// Done is closed when a component exits on its own (Err says which) or
// when Stop is called.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Err is the reason Done was closed by a component's exit, or nil.
func (s *Stack) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// Processes returns the processes the stack runs (SPIRE, the daemons and
// any extra verifiers), in start order.
func (s *Stack) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Process(nil), s.procs...)
}

// Stop stops every process in reverse start order (SIGTERM, then SIGKILL
// after StopTimeout) and removes Dir unless Keep was set. It is safe to call
// more than once and from several goroutines: every call waits for the
// first one and returns its result.
func (s *Stack) Stop() error {
	s.stopOnce.Do(s.stop)
	return s.stopErr
}

func (s *Stack) stop() {
	s.mu.Lock()
	s.stopping = true
	procs := append([]*Process(nil), s.procs...)
	if !s.doneClosed {
		s.doneClosed = true
		close(s.done)
	}
	s.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if !s.keep {
		if err := s.removeFiles(); err != nil {
			errs = append(errs, err)
		}
	}
	s.stopErr = errors.Join(errs...)
}

// removeFiles removes what the stack wrote: the whole Dir if it made it,
// else the entries it created in it.
func (s *Stack) removeFiles() error {
	if s.Dir == "" {
		return nil
	}
	if s.createdDir {
		return os.RemoveAll(s.Dir)
	}
	var errs []error
	for _, e := range []string{"server", "agent", "registrar", "verifier", "witness", "tasks", "logs", "tmp", "prompt.txt", "bundle.pem"} {
		if err := os.RemoveAll(s.path(e)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Env returns the environment variables that point the agentid CLI and
// go-spiffe at the stack: SPIRE_SERVER_SOCKET, SPIFFE_ENDPOINT_SOCKET and
// AGENTID_MANIFEST_DIR, as KEY=value.
func (s *Stack) Env() []string {
	return []string{
		"SPIRE_SERVER_SOCKET=" + s.ServerSocket,
		"SPIFFE_ENDPOINT_SOCKET=unix://" + s.AgentSocket,
		"AGENTID_MANIFEST_DIR=" + s.ManifestDir,
	}
}
