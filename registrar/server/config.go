package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/internal/hclconf"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fileConfig is the HCL file as written; Config is the validated form.
type fileConfig struct {
	TrustDomain        string `hcl:"trust_domain"`
	ServerAPISocket    string `hcl:"server_api_socket"`
	IssuancePolicy     string `hcl:"issuance_policy"`
	ParentID           string `hcl:"parent_id,optional"`
	OperatorSocket     string `hcl:"operator_socket,optional"`
	OperatorSocketMode string `hcl:"operator_socket_mode,optional"`
	Listen             string `hcl:"listen,optional"`
	WorkloadAPISocket  string `hcl:"workload_api_socket,optional"`
	JWTAudience        string `hcl:"jwt_audience,optional"`
	SelectorType       string `hcl:"selector_type,optional"`
	MaxX509SVIDTTL     string `hcl:"max_x509_svid_ttl,optional"`
	MaxJWTSVIDTTL      string `hcl:"max_jwt_svid_ttl,optional"`
	RecreateQuiet      string `hcl:"recreate_quiet_period,optional"`
	Audit              *struct {
		Path       string `hcl:"path,optional"`
		Durability string `hcl:"durability,optional"`
		// Rotation and retention (package audit, Options).
		MaxBytes       int64  `hcl:"max_bytes,optional"`
		RotateInterval string `hcl:"rotate_interval,optional"`
		MaxSegments    int    `hcl:"max_segments,optional"`
		SignerID       string `hcl:"signer_id,optional"`
		WitnessURL     string `hcl:"witness_url,optional"`
		WitnessKey     string `hcl:"witness_key,optional"`
		MySQL          *struct {
			DSN string `hcl:"dsn"`
			Log string `hcl:"log"`
		} `hcl:"mysql,block"`
	} `hcl:"audit,block"`
	Metrics *struct {
		Listen string `hcl:"listen"`
	} `hcl:"metrics,block"`
	Liveness *struct {
		Subscribers []string `hcl:"subscribers"`
		Interval    string   `hcl:"interval,optional"`
	} `hcl:"liveness,block"`

	body *hclsyntax.Body // for the positions of values found wrong
}

// Config is a validated agentid-registrar configuration.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// ServerAPISocket is the SPIRE server's local API socket (a path, or
	// a gRPC target "unix://…").
	ServerAPISocket string
	// IssuancePolicy is the issuance policy file, reloaded on SIGHUP.
	IssuancePolicy string
	// ParentID is the SPIRE parent ID of root tasks created without one
	// (empty: CreateTask must give parent_id).
	ParentID string
	// OperatorSocket is the unix socket of the operator API (every RPC),
	// created with OperatorSocketMode (default 0660).
	OperatorSocket     string
	OperatorSocketMode fs.FileMode
	// Listen is the TCP address of the SPIFFE mTLS listener for agent
	// tasks (DelegateTask only); WorkloadAPISocket, the SPIRE agent's
	// socket, gives the registrar's own SVID and the bundles.
	Listen            string
	WorkloadAPISocket string
	// JWTAudience, when set, accepts JWT-SVID bearers with this audience
	// on DelegateTask.
	JWTAudience string
	// SelectorType, MaxX509SVIDTTL and MaxJWTSVIDTTL configure the
	// registrar (defaults: svid.DefaultSelectorType,
	// registrar.DefaultMaxX509TTL, registrar.DefaultMaxJWTTTL).
	SelectorType                  string
	MaxX509SVIDTTL, MaxJWTSVIDTTL time.Duration
	// RecreateQuietPeriod (recreate_quiet_period) is how long after
	// revoking a task the registrar refuses to create its task ID again
	// (WithQuietPeriod); default QuietPeriodFor(MaxJWTSVIDTTL), 0 off.
	RecreateQuietPeriod time.Duration
	// AuditPath, when set, is the hash-chained log of every task action
	// (package audit), written with AuditDurability and signed with the
	// registrar's SVID when it has one.
	AuditPath       string
	AuditDurability audit.Durability
	// AuditMaxBytes, AuditRotateInterval and AuditMaxSegments are the
	// log's rotation and retention (audit.Options).
	AuditMaxBytes       int64
	AuditRotateInterval time.Duration
	AuditMaxSegments    int
	// AuditMySQL, instead of AuditPath, keeps the log in MariaDB/MySQL
	// (audit { mysql { dsn, log } }).
	AuditMySQL *mysqlstore.Config
	// AuditSignerID (signer_id) is the only SPIFFE ID checkpoints are
	// signed as; AuditWitness (witness_url, witness_key) cosigns them.
	AuditSignerID spiffeid.ID
	AuditWitness  *witness.Client
	// MetricsListen, when set, is the TCP address of the HTTP listener
	// serving /metrics (Prometheus), /healthz and /readyz.
	MetricsListen string
	// LivenessSubscribers may call WatchLiveness on the mTLS listener
	// (verifiers' SPIFFE IDs); a snapshot goes out every LivenessInterval.
	LivenessSubscribers []spiffeid.ID
	LivenessInterval    time.Duration
}

// DefaultOperatorSocketMode is the operator socket's mode unless the
// configuration sets operator_socket_mode.
const DefaultOperatorSocketMode fs.FileMode = 0o660

// LoadConfig reads and validates a configuration file. Syntax errors and
// unknown or missing keys are hcl diagnostics naming file:line:col.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registrar config: %w", err)
	}
	return ParseConfig(src, path)
}

// ParseConfig is LoadConfig on a file's contents; filename names it in
// errors.
func ParseConfig(src []byte, filename string) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	var raw fileConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		return nil, diagError(diags)
	}
	raw.body, _ = f.Body.(*hclsyntax.Body)
	cfg, err := raw.build()
	var pe *hclconf.PositionError
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("registrar config %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("registrar config %s: %w", filename, err)
	}
	return cfg, nil
}

func (raw *fileConfig) build() (*Config, error) {
	cfg := &Config{ServerAPISocket: raw.ServerAPISocket, IssuancePolicy: raw.IssuancePolicy,
		OperatorSocket: raw.OperatorSocket, OperatorSocketMode: DefaultOperatorSocketMode,
		Listen: raw.Listen, WorkloadAPISocket: raw.WorkloadAPISocket, JWTAudience: raw.JWTAudience,
		SelectorType: raw.SelectorType, MaxX509SVIDTTL: registrar.DefaultMaxX509TTL, MaxJWTSVIDTTL: registrar.DefaultMaxJWTTTL}
	var err error
	if cfg.TrustDomain, err = spiffeid.TrustDomainFromString(raw.TrustDomain); err != nil {
		return nil, fmt.Errorf("trust_domain: %w", err)
	}
	if raw.ParentID != "" {
		id, err := spiffeid.FromString(raw.ParentID)
		if err != nil {
			return nil, fmt.Errorf("parent_id: %w", err)
		}
		cfg.ParentID = id.String()
	}
	if cfg.SelectorType == "" {
		cfg.SelectorType = svid.DefaultSelectorType
	}
	if err := cfg.buildListeners(raw); err != nil {
		return nil, err
	}
	if a := raw.Audit; a != nil {
		if cfg.AuditDurability, err = audit.ParseDurability(a.Durability); err != nil {
			return nil, hclconf.At(raw.body, "audit.durability", fmt.Errorf("audit.durability: %w", err))
		}
		cfg.AuditPath, cfg.AuditMaxBytes, cfg.AuditMaxSegments = a.Path, a.MaxBytes, a.MaxSegments
		switch {
		case a.MySQL != nil && a.Path != "":
			return nil, hclconf.At(raw.body, "audit.path", errors.New("audit: path (a file log) and a mysql block (a log in MariaDB/MySQL) exclude each other"))
		case a.MySQL != nil:
			c := mysqlstore.Config{DSN: a.MySQL.DSN, Log: a.MySQL.Log}
			if key, err := c.Check(); err != nil {
				return nil, hclconf.At(raw.body, "audit.mysql."+key, err)
			}
			cfg.AuditMySQL = &c
		case a.Path == "":
			return nil, errors.New("audit: give path (a file log) or a mysql { dsn, log } block")
		}
		var key string
		if cfg.AuditRotateInterval, key, err = audit.ParseRotation(a.RotateInterval, a.MaxSegments); err != nil {
			return nil, hclconf.At(raw.body, "audit."+key, err)
		}
		ws, err := witness.ParseWriterSettings(a.SignerID, a.WitnessURL, a.WitnessKey)
		if err != nil {
			return nil, hclconf.At(raw.body, "audit."+ws.BadKey, err)
		}
		cfg.AuditSignerID, cfg.AuditWitness = ws.SignerID, ws.Client
	}
	if cfg.MaxX509SVIDTTL, err = positiveDuration("max_x509_svid_ttl", raw.MaxX509SVIDTTL, cfg.MaxX509SVIDTTL); err != nil {
		return nil, err
	}
	if cfg.MaxJWTSVIDTTL, err = positiveDuration("max_jwt_svid_ttl", raw.MaxJWTSVIDTTL, cfg.MaxJWTSVIDTTL); err != nil {
		return nil, err
	}
	cfg.RecreateQuietPeriod = QuietPeriodFor(cfg.MaxJWTSVIDTTL)
	if raw.RecreateQuiet != "" {
		d, err := time.ParseDuration(raw.RecreateQuiet)
		if err != nil || d < 0 {
			return nil, hclconf.At(raw.body, "recreate_quiet_period", fmt.Errorf(
				"recreate_quiet_period %q: want a duration such as \"6m\" (at least max_jwt_svid_ttl + 12s; \"0s\" turns it off)", raw.RecreateQuiet))
		}
		cfg.RecreateQuietPeriod = d
	}
	return cfg, nil
}

func (cfg *Config) buildListeners(raw *fileConfig) error {
	if raw.OperatorSocketMode != "" {
		m, err := strconv.ParseUint(raw.OperatorSocketMode, 8, 32)
		if err != nil || (m != 0o600 && m != 0o660) {
			return fmt.Errorf("operator_socket_mode %q: want \"0600\" or \"0660\"", raw.OperatorSocketMode)
		}
		cfg.OperatorSocketMode = fs.FileMode(m)
	}
	switch {
	case cfg.OperatorSocket == "" && cfg.Listen == "":
		return errors.New("nothing to serve: set operator_socket, listen or both")
	case cfg.Listen != "" && cfg.WorkloadAPISocket == "":
		return errors.New("listen needs workload_api_socket (the SPIRE agent socket giving the registrar's SVID and bundles)")
	case cfg.JWTAudience != "" && cfg.WorkloadAPISocket == "":
		return errors.New("jwt_audience needs workload_api_socket (the SPIRE agent socket giving the JWT bundles)")
	}
	if cfg.Listen != "" {
		if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	if m := raw.Metrics; m != nil {
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		cfg.MetricsListen = m.Listen
	}
	if l := raw.Liveness; l != nil {
		if cfg.Listen == "" {
			return errors.New("liveness needs listen (verifiers watch over SPIFFE mTLS)")
		}
		for _, s := range l.Subscribers {
			id, err := spiffeid.FromString(s)
			if err != nil {
				return fmt.Errorf("liveness.subscribers: %q: %w", s, err)
			}
			cfg.LivenessSubscribers = append(cfg.LivenessSubscribers, id)
		}
		var err error
		if cfg.LivenessInterval, err = positiveDuration("liveness.interval", l.Interval, time.Second); err != nil {
			return err
		}
	}
	return nil
}

func positiveDuration(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as \"1h\" or \"5m\"", name, s)
	}
	return d, nil
}

// diagError reports every error diagnostic, one per line, as
// "file:line:col: summary; detail".
func diagError(diags hcl.Diagnostics) error {
	return fmt.Errorf("registrar config:\n%w", hclconf.Errors(diags))
}
