// Package daemon runs agentid-verifier: it loads the HCL configuration,
// keeps the trust bundles and its own SVID current (Workload API or files),
// loads and hot-reloads the policy directory (file watch and SIGHUP, keeping
// the last good set), and serves any combination of the front-ends —
// Envoy ext_authz, the mTLS reverse proxy, the check API and the MCP
// gateway (verifier/mcpgw) — plus Prometheus metrics and /healthz and
// /readyz.
package daemon

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"github.com/agentid/agentid/svid/httpsig"
	"net/url"
	"os"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/internal/hclconf"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fileConfig is the HCL file as written; Config is the validated form.
type fileConfig struct {
	TrustDomain  string   `hcl:"trust_domain"`
	TrustDomains []string `hcl:"trust_domains,optional"`
	ExtensionOID string   `hcl:"extension_oid,optional"`
	PolicyDir    string   `hcl:"policy_dir"`
	JWTAudiences []string `hcl:"jwt_audiences,optional"`
	// IdentityHeaders is a pointer so that an empty list is told apart
	// from a missing one.
	IdentityHeaders *[]string `hcl:"identity_headers,optional"`
	// MaxFormBody bounds the form and JSON POST bodies read for a
	// "_method" field (bytes; 0: verifier.MaxFormBody).
	MaxFormBody int `hcl:"max_form_body,optional"`

	WorkloadAPI *struct {
		Socket string `hcl:"socket"`
	} `hcl:"workload_api,block"`
	Files *struct {
		X509Bundle string `hcl:"x509_bundle"`
		JWTBundle  string `hcl:"jwt_bundle,optional"`
		SVIDCert   string `hcl:"svid_cert,optional"`
		SVIDKey    string `hcl:"svid_key,optional"`
	} `hcl:"files,block"`
	Audit *struct {
		Path               string `hcl:"path,optional"`
		Durability         string `hcl:"durability,optional"`
		MaxBytes           int64  `hcl:"max_bytes,optional"`
		RotateInterval     string `hcl:"rotate_interval,optional"`
		MaxSegments        int    `hcl:"max_segments,optional"`
		CheckpointEvery    int    `hcl:"checkpoint_every,optional"`
		CheckpointInterval string `hcl:"checkpoint_interval,optional"`
		OnFailure          string `hcl:"on_failure,optional"`
		Receipts           *bool  `hcl:"receipts,optional"`
		SignerID           string `hcl:"signer_id,optional"`
		WitnessURL         string `hcl:"witness_url,optional"`
		WitnessKey         string `hcl:"witness_key,optional"`
		MySQL              *struct {
			DSN string `hcl:"dsn"`
			Log string `hcl:"log"`
		} `hcl:"mysql,block"`
	} `hcl:"audit,block"`
	ExtAuthz *struct {
		Listen         string   `hcl:"listen"`
		MCPPaths       []string `hcl:"mcp_paths,optional"`
		AllowedCallers []string `hcl:"allowed_callers,optional"`
	} `hcl:"ext_authz,block"`
	Proxy *struct {
		Listen        string   `hcl:"listen"`
		Upstream      string   `hcl:"upstream"`
		MCPPaths      []string `hcl:"mcp_paths,optional"`
		AllowUpgrades bool     `hcl:"allow_upgrades,optional"`
	} `hcl:"proxy,block"`
	CheckAPI *struct {
		Listen         string   `hcl:"listen"`
		AllowedCallers []string `hcl:"allowed_callers,optional"`
	} `hcl:"check_api,block"`
	AuthZEN *struct {
		SubjectTypes []string `hcl:"subject_types,optional"`
		MaxBatch     int      `hcl:"max_batch,optional"`
		PDP          string   `hcl:"policy_decision_point,optional"`
		AnyCaller    bool     `hcl:"certificates_from_any_caller,optional"`
	} `hcl:"authzen,block"`
	Metrics *struct {
		Listen string `hcl:"listen"`
	} `hcl:"metrics,block"`
	MCP      *mcpBlock `hcl:"mcp,block"`
	Liveness *struct {
		Registrars      []string `hcl:"registrars"`
		RegistrarIDs    []string `hcl:"registrar_ids"`
		MaxStaleness    string   `hcl:"max_staleness,optional"`
		OnStale         string   `hcl:"on_stale,optional"`
		RememberRevoked string   `hcl:"remember_revoked,optional"`
	} `hcl:"liveness,block"`
	Signatures *struct {
		Require    bool     `hcl:"require,optional"`
		Window     string   `hcl:"window,optional"`
		Algorithms []string `hcl:"algorithms,optional"`
		MaxNonces  *int     `hcl:"max_nonces,optional"`
		RecordBody bool     `hcl:"record_body,optional"`
		MaxBody    *int     `hcl:"max_recorded_body,optional"`
	} `hcl:"signatures,block"`

	body *hclsyntax.Body // for the positions of values found wrong
}

// Config is a validated verifier configuration.
type Config struct {
	TrustDomain  spiffeid.TrustDomain
	TrustDomains []spiffeid.TrustDomain
	ExtensionOID asn1.ObjectIdentifier
	PolicyDir    string
	JWTAudiences []string
	// IdentityHeaders are the identity headers the proxy and ext_authz send
	// upstream (identity_headers; zero: verifier.DefaultHeaders).
	IdentityHeaders verifier.HeaderSet
	// MaxFormBody is verifier.Verifier.MaxFormBody (max_form_body).
	MaxFormBody int

	// Exactly one of WorkloadAPISocket and Files is set.
	WorkloadAPISocket string
	Files             *Files

	Audit *AuditConfig

	ExtAuthzListen   string
	ExtAuthzMCPPaths []string
	// ExtAuthzCallers and CheckAPICallers, when set, make that front-end
	// serve SPIFFE mTLS and accept only clients with one of these IDs.
	ExtAuthzCallers []spiffeid.ID
	ProxyListen     string
	ProxyUpstream   *url.URL
	ProxyMCPPaths   []string
	CheckAPIListen  string
	CheckAPICallers []spiffeid.ID
	MetricsListen   string

	// ProxyAllowUpgrades lets protocol upgrades (WebSocket, h2c, …)
	// through the proxy (proxy.allow_upgrades; default false: refused).
	ProxyAllowUpgrades bool

	// AuthZEN, when set, serves the AuthZEN 1.0 API on the check API's
	// listener (same mTLS and allowed callers).
	AuthZEN *AuthZENConfig

	// Liveness, when set, watches the registrars' liveness feed: revoked
	// tasks (and delegates of revoked tasks) are refused.
	Liveness *LivenessConfig

	// MCP, when set, serves the MCP gateway (verifier/mcpgw).
	MCP *MCPConfig

	// Signatures configures agent-signed requests (always on: a signed
	// request is verified, and a rule's require_signature enforced; the
	// signatures block tunes it and can require signatures everywhere).
	Signatures SignaturesConfig
}

// SignaturesConfig is the signatures block (see verifier.Signatures).
type SignaturesConfig struct {
	Require         bool
	Window          time.Duration
	Algorithms      []string
	MaxNonces       int
	RecordBody      bool
	MaxRecordedBody int
}

// LivenessConfig configures the liveness feed.
type LivenessConfig struct {
	// Registrars are the registrars' SPIFFE mTLS listeners (host:port),
	// tried in turn; RegistrarIDs the SPIFFE IDs they may present.
	Registrars   []string
	RegistrarIDs []spiffeid.ID
	// MaxStaleness (default 5 s) and FailOpen: see verifier.LivenessView.
	MaxStaleness time.Duration
	FailOpen     bool
	// RememberRevoked (default 1 h): how long a revocation is remembered,
	// verifier.LivenessView.RememberRemoved.
	RememberRevoked time.Duration
}

// AuthZENConfig configures the AuthZEN endpoints (see verifier.AuthZEN).
type AuthZENConfig struct {
	// SubjectTypes are the subject types a PEP may assert (its word);
	// agent_task subjects are always accepted and proven.
	SubjectTypes []string
	// MaxBatch bounds a batch (default verifier.DefaultAuthZENMaxBatch,
	// at most MaxAuthZENBatch).
	MaxBatch int
	// PDP is the discovery document's policy_decision_point ("": the URL
	// the request was sent to).
	PDP string
	// CertificatesFromAnyCaller: see verifier.AuthZEN (off: an agent_task
	// "certificate" needs a caller in check_api.allowed_callers).
	CertificatesFromAnyCaller bool
}

// MaxAuthZENBatch is the largest max_batch a configuration may set.
const MaxAuthZENBatch = 5000

// Files are bundle and SVID files, for deployments without a Workload API.
type Files struct {
	X509Bundle, JWTBundle, SVIDCert, SVIDKey string
}

// AuditConfig configures the decision log.
type AuditConfig struct {
	Path    string
	Options audit.Options
	// FailOpen gives decisions that cannot be recorded (on_failure =
	// "allow"); by default they are refused (on_failure = "deny").
	FailOpen bool
	// WitnessURL is witness_url (Options.Witness is its client).
	WitnessURL string
	// MySQL, instead of Path, keeps the log in MariaDB/MySQL (the
	// mysql { dsn, log } block; package audit/mysqlstore).
	MySQL *mysqlstore.Config
	// Receipts (default true; receipts = false turns them off): every
	// allowed decision waits until its record is durable and carries its
	// reference (x-agentid-receipt, the check API's "receipt").
	Receipts bool
}

// LoadConfig reads and validates the configuration file. Errors are
// hcl.Diagnostics naming file:line:col.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(src, path)
}

// ParseConfig is LoadConfig on a file's contents.
func ParseConfig(src []byte, filename string) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, hclconf.Errors(diags)
	}
	var raw fileConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		return nil, hclconf.Errors(diags)
	}
	raw.body, _ = f.Body.(*hclsyntax.Body)
	cfg, err := build(&raw)
	var pe *hclconf.PositionError
	if errors.As(err, &pe) {
		return nil, err // file:line:col: …
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return cfg, nil
}

func build(raw *fileConfig) (*Config, error) {
	cfg := &Config{PolicyDir: raw.PolicyDir, JWTAudiences: raw.JWTAudiences, ExtensionOID: svid.DefaultOID}
	var err error
	if cfg.TrustDomain, err = spiffeid.TrustDomainFromString(raw.TrustDomain); err != nil {
		return nil, fmt.Errorf("trust_domain: %w", err)
	}
	for _, s := range raw.TrustDomains {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, fmt.Errorf("trust_domains: %w", err)
		}
		cfg.TrustDomains = append(cfg.TrustDomains, td)
	}
	if len(cfg.TrustDomains) == 0 {
		cfg.TrustDomains = []spiffeid.TrustDomain{cfg.TrustDomain}
	}
	if raw.ExtensionOID != "" {
		if cfg.ExtensionOID, err = svid.ParseOID(raw.ExtensionOID); err != nil {
			return nil, fmt.Errorf("extension_oid: %w", err)
		}
	}
	if raw.MaxFormBody < 0 || raw.MaxFormBody > 1<<30 {
		return nil, hclconf.At(raw.body, "max_form_body", fmt.Errorf("max_form_body %d: want a number of bytes from 1 to 1073741824 (0 or none: %d)", raw.MaxFormBody, verifier.MaxFormBody))
	}
	cfg.MaxFormBody = raw.MaxFormBody
	if raw.IdentityHeaders != nil {
		if cfg.IdentityHeaders, err = verifier.ParseHeaderSet(*raw.IdentityHeaders); err != nil {
			return nil, hclconf.At(raw.body, "identity_headers", fmt.Errorf("identity_headers: %w", err))
		}
	}
	if err := cfg.buildSources(raw); err != nil {
		return nil, err
	}
	if err := cfg.buildAudit(raw); err != nil {
		return nil, err
	}
	if err := cfg.buildLiveness(raw); err != nil {
		return nil, err
	}
	if err := cfg.buildSignatures(raw); err != nil {
		return nil, err
	}
	return cfg, cfg.buildFrontEnds(raw)
}

func (cfg *Config) buildSources(raw *fileConfig) error {
	switch {
	case raw.WorkloadAPI != nil && raw.Files != nil:
		return fmt.Errorf("give either a workload_api block or a files block, not both")
	case raw.WorkloadAPI != nil:
		cfg.WorkloadAPISocket = raw.WorkloadAPI.Socket
	case raw.Files != nil:
		f := raw.Files
		if (f.SVIDCert == "") != (f.SVIDKey == "") {
			return fmt.Errorf("files: svid_cert and svid_key go together")
		}
		cfg.Files = &Files{X509Bundle: f.X509Bundle, JWTBundle: f.JWTBundle, SVIDCert: f.SVIDCert, SVIDKey: f.SVIDKey}
	default:
		return fmt.Errorf("a workload_api block or a files block is required (where the trust bundles come from)")
	}
	return nil
}

func (cfg *Config) buildAudit(raw *fileConfig) error {
	a := raw.Audit
	if a == nil {
		return nil
	}
	at := func(key string, err error) error { return hclconf.At(raw.body, "audit."+key, err) }
	d, err := audit.ParseDurability(a.Durability)
	if err != nil {
		return at("durability", fmt.Errorf("audit.durability: %w", err))
	}
	opts := audit.Options{Durability: d, MaxBytes: a.MaxBytes, CheckpointEvery: a.CheckpointEvery, MaxSegments: a.MaxSegments}
	var key string
	if opts.RotateInterval, key, err = audit.ParseRotation(a.RotateInterval, a.MaxSegments); err != nil {
		return at(key, err)
	}
	if a.CheckpointInterval != "" {
		if opts.CheckpointInterval, err = time.ParseDuration(a.CheckpointInterval); err != nil {
			return at("checkpoint_interval", fmt.Errorf("audit.checkpoint_interval: %w", err))
		}
	}
	cfg.Audit = &AuditConfig{Path: a.Path, Options: opts, Receipts: a.Receipts == nil || *a.Receipts}
	switch {
	case a.MySQL != nil && a.Path != "":
		return at("path", errors.New("audit: path (a file log) and a mysql block (a log in MariaDB/MySQL) exclude each other"))
	case a.MySQL != nil:
		c := mysqlstore.Config{DSN: a.MySQL.DSN, Log: a.MySQL.Log}
		if key, err := c.Check(); err != nil {
			return at("mysql."+key, err)
		}
		cfg.Audit.MySQL = &c
	case a.Path == "":
		return errors.New("audit: give path (a file log) or a mysql { dsn, log } block")
	}
	switch a.OnFailure {
	case "", "deny":
	case "allow":
		cfg.Audit.FailOpen = true
	default:
		return at("on_failure", fmt.Errorf("audit.on_failure %q: want \"deny\" (default) or \"allow\"", a.OnFailure))
	}
	ws, err := witness.ParseWriterSettings(a.SignerID, a.WitnessURL, a.WitnessKey)
	if err != nil {
		return at(ws.BadKey, err)
	}
	cfg.Audit.Options.SignerID, cfg.Audit.WitnessURL = ws.SignerID, a.WitnessURL
	if ws.Client != nil {
		cfg.Audit.Options.Witness = ws.Client
	}
	return nil
}

func (cfg *Config) buildFrontEnds(raw *fileConfig) error {
	var err error
	if raw.ExtAuthz != nil {
		cfg.ExtAuthzListen, cfg.ExtAuthzMCPPaths = raw.ExtAuthz.Listen, raw.ExtAuthz.MCPPaths
		if cfg.ExtAuthzCallers, err = cfg.callers("ext_authz", raw.ExtAuthz.AllowedCallers); err != nil {
			return err
		}
	}
	if raw.Proxy != nil {
		u, err := url.Parse(raw.Proxy.Upstream)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("proxy.upstream %q is not an absolute URL", raw.Proxy.Upstream)
		}
		cfg.ProxyListen, cfg.ProxyUpstream, cfg.ProxyMCPPaths = raw.Proxy.Listen, u, raw.Proxy.MCPPaths
		cfg.ProxyAllowUpgrades = raw.Proxy.AllowUpgrades
		if cfg.Files != nil && cfg.Files.SVIDCert == "" {
			return fmt.Errorf("proxy needs the verifier's own SVID: set files.svid_cert and files.svid_key, or use workload_api")
		}
	}
	if raw.CheckAPI != nil {
		cfg.CheckAPIListen = raw.CheckAPI.Listen
		if cfg.CheckAPICallers, err = cfg.callers("check_api", raw.CheckAPI.AllowedCallers); err != nil {
			return err
		}
	}
	if raw.Metrics != nil {
		cfg.MetricsListen = raw.Metrics.Listen
	}
	if err := cfg.buildAuthZEN(raw); err != nil {
		return err
	}
	if err := cfg.buildMCP(raw); err != nil {
		return err
	}
	if cfg.ExtAuthzListen == "" && cfg.ProxyListen == "" && cfg.CheckAPIListen == "" && cfg.MCP == nil {
		return fmt.Errorf("nothing to serve: add an ext_authz, proxy, check_api or mcp block")
	}
	return nil
}

// callers parses an allowed_callers list; serving mTLS needs the
// verifier's own SVID.
func (cfg *Config) callers(block string, ids []string) ([]spiffeid.ID, error) {
	var out []spiffeid.ID
	for _, s := range ids {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("%s.allowed_callers: %q: %w", block, s, err)
		}
		out = append(out, id)
	}
	if len(out) > 0 && cfg.Files != nil && cfg.Files.SVIDCert == "" {
		return nil, fmt.Errorf("%s.allowed_callers needs the verifier's own SVID for mTLS: set files.svid_cert and files.svid_key, or use workload_api", block)
	}
	return out, nil
}

func (cfg *Config) buildLiveness(raw *fileConfig) error {
	l := raw.Liveness
	if l == nil {
		return nil
	}
	lc := &LivenessConfig{Registrars: l.Registrars, MaxStaleness: 5 * time.Second}
	if len(l.Registrars) == 0 || len(l.RegistrarIDs) == 0 {
		return fmt.Errorf("liveness: registrars and registrar_ids must not be empty")
	}
	for _, s := range l.RegistrarIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return fmt.Errorf("liveness.registrar_ids: %q: %w", s, err)
		}
		lc.RegistrarIDs = append(lc.RegistrarIDs, id)
	}
	if l.MaxStaleness != "" {
		d, err := time.ParseDuration(l.MaxStaleness)
		if err != nil || d <= 0 {
			return fmt.Errorf("liveness.max_staleness %q: want a positive duration such as \"5s\"", l.MaxStaleness)
		}
		lc.MaxStaleness = d
	}
	if l.RememberRevoked != "" {
		d, err := time.ParseDuration(l.RememberRevoked)
		if err != nil || d <= 0 {
			return fmt.Errorf("liveness.remember_revoked %q: want a positive duration such as \"1h\" (at least the longest lifetime of a task's SVIDs)", l.RememberRevoked)
		}
		lc.RememberRevoked = d
	}
	switch l.OnStale {
	case "", "deny":
	case "allow":
		lc.FailOpen = true
	default:
		return fmt.Errorf("liveness.on_stale %q: want \"deny\" (default) or \"allow\"", l.OnStale)
	}
	if cfg.Files != nil && cfg.Files.SVIDCert == "" {
		return fmt.Errorf("liveness needs the verifier's own SVID (the registrars authenticate it): set files.svid_cert and files.svid_key, or use workload_api")
	}
	cfg.Liveness = lc
	return nil
}

func (cfg *Config) buildAuthZEN(raw *fileConfig) error {
	z := raw.AuthZEN
	if z == nil {
		return nil
	}
	if raw.CheckAPI == nil {
		return fmt.Errorf("authzen is served on the check API's listener: add a check_api block")
	}
	ac := &AuthZENConfig{MaxBatch: z.MaxBatch, PDP: z.PDP, CertificatesFromAnyCaller: z.AnyCaller}
	for _, t := range z.SubjectTypes {
		switch {
		case t == "":
			return fmt.Errorf("authzen.subject_types: an empty type")
		case t == policies.SubjectAgentTask || t == policies.SubjectWorkload:
			return fmt.Errorf("authzen.subject_types: %q is the type of authenticated peers and cannot be asserted (agent_task subjects are always accepted, with their credential)", t)
		}
		ac.SubjectTypes = append(ac.SubjectTypes, t)
	}
	if z.MaxBatch < 0 || z.MaxBatch > MaxAuthZENBatch {
		return fmt.Errorf("authzen.max_batch %d: want 1 to %d (default %d)", z.MaxBatch, MaxAuthZENBatch, verifier.DefaultAuthZENMaxBatch)
	}
	if z.PDP != "" {
		u, err := url.Parse(z.PDP)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("authzen.policy_decision_point %q: want an absolute https URL without query or fragment", z.PDP)
		}
	}
	cfg.AuthZEN = ac
	return nil
}

func (cfg *Config) buildSignatures(raw *fileConfig) error {
	s := raw.Signatures
	if s == nil {
		return nil
	}
	at := func(key string, err error) error { return hclconf.At(raw.body, "signatures."+key, err) }
	cfg.Signatures = SignaturesConfig{Require: s.Require, Algorithms: s.Algorithms, RecordBody: s.RecordBody}
	if s.Window != "" {
		d, err := time.ParseDuration(s.Window)
		if err != nil || d <= 0 {
			return at("window", fmt.Errorf("signatures.window %q: want a positive duration such as \"60s\"", s.Window))
		}
		cfg.Signatures.Window = d
	}
	for _, a := range s.Algorithms {
		switch a {
		case httpsig.AlgECDSAP256, httpsig.AlgECDSAP384, httpsig.AlgEd25519, httpsig.AlgRSAPSS:
		default:
			return at("algorithms", fmt.Errorf("signatures.algorithms: %q is not an asymmetric RFC 9421 algorithm agentid verifies (%s, %s, %s, %s)",
				a, httpsig.AlgECDSAP256, httpsig.AlgECDSAP384, httpsig.AlgEd25519, httpsig.AlgRSAPSS))
		}
	}
	if s.MaxNonces != nil {
		if *s.MaxNonces <= 0 {
			return at("max_nonces", fmt.Errorf("signatures.max_nonces %d: want a positive number", *s.MaxNonces))
		}
		cfg.Signatures.MaxNonces = *s.MaxNonces
	}
	if s.MaxBody != nil {
		if *s.MaxBody <= 0 {
			return at("max_recorded_body", fmt.Errorf("signatures.max_recorded_body %d: want a positive number of bytes", *s.MaxBody))
		}
		cfg.Signatures.MaxRecordedBody = *s.MaxBody
	}
	return nil
}
