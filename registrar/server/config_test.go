package server

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig("../../examples/registrar/registrar.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{TrustDomain: testTD, ServerAPISocket: "/tmp/spire-server/private/api.sock",
		IssuancePolicy: "/etc/agentid/issuance.hcl", ParentID: testNode,
		OperatorSocket: "/run/agentid-registrar/operator.sock", OperatorSocketMode: 0o660,
		Listen: "0.0.0.0:8444", WorkloadAPISocket: "/tmp/spire-agent/public/api.sock",
		JWTAudience: "spiffe://example.org/registrar", SelectorType: "agentid",
		MaxX509SVIDTTL: 5 * time.Minute, MaxJWTSVIDTTL: 5 * time.Minute, RecreateQuietPeriod: 6 * time.Minute,
		AuditPath: "/var/log/agentid/registrar-audit.log", MetricsListen: "127.0.0.1:9091"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

// TestConfigDefaultX509TTL: without max_x509_svid_ttl, task X.509-SVIDs
// live minutes, not SPIRE's hour, so a revoked task's X.509-SVID is out of
// use within minutes even without a liveness feed.
func TestConfigDefaultX509TTL(t *testing.T) {
	cfg, err := ParseConfig([]byte("trust_domain = \"example.org\"\nserver_api_socket = \"/s\"\nissuance_policy = \"/p\"\noperator_socket = \"/o\"\n"), "r.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxX509SVIDTTL != 5*time.Minute || cfg.MaxJWTSVIDTTL != 5*time.Minute {
		t.Errorf("default TTL caps x509 %s jwt %s, want 5m 5m", cfg.MaxX509SVIDTTL, cfg.MaxJWTSVIDTTL)
	}
}

// TestConfigQuietPeriod: recreate_quiet_period defaults to
// max_jwt_svid_ttl plus one minute (docs/registrar.md), follows a
// max_jwt_svid_ttl set in the file, and may be set, to 0 too.
func TestConfigQuietPeriod(t *testing.T) {
	const base = "trust_domain = \"example.org\"\nserver_api_socket = \"/s\"\nissuance_policy = \"/p\"\noperator_socket = \"/o\"\n"
	for _, tt := range []struct {
		name, src string
		want      time.Duration
	}{
		{"default", "", 6 * time.Minute},
		{"follows max_jwt_svid_ttl", "max_jwt_svid_ttl = \"15m\"\n", 16 * time.Minute},
		{"set", "recreate_quiet_period = \"20m\"\n", 20 * time.Minute},
		{"off", "recreate_quiet_period = \"0s\"\n", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(base+tt.src), "r.hcl")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RecreateQuietPeriod != tt.want {
				t.Errorf("recreate_quiet_period %s, want %s", cfg.RecreateQuietPeriod, tt.want)
			}
		})
	}
	if DefaultQuietPeriod != 6*time.Minute || MinQuietPeriodFor(5*time.Minute) != 5*time.Minute+12*time.Second {
		t.Errorf("DefaultQuietPeriod %s, MinQuietPeriodFor(5m) %s", DefaultQuietPeriod, MinQuietPeriodFor(5*time.Minute))
	}
}

func TestParseConfigErrors(t *testing.T) {
	const base = "trust_domain = \"example.org\"\nserver_api_socket = \"/s\"\nissuance_policy = \"/p\"\n"
	tests := []struct {
		name, src, err string
	}{
		{"unknown key", base + "operator_sokcet = \"/o\"\n", "registrar config:\nr.hcl:4:1: Unsupported argument; " +
			`An argument named "operator_sokcet" is not expected here. Did you mean "operator_socket"?`},
		{"missing key", "trust_domain = \"example.org\"\noperator_socket = \"/o\"\n", "registrar config:\n" +
			`r.hcl:1:1: Missing required argument; The argument "issuance_policy" is required, but no definition was found.` + "\n" +
			`r.hcl:1:1: Missing required argument; The argument "server_api_socket" is required, but no definition was found.`},
		{"syntax", base + "listen = \n", "registrar config:\nr.hcl:4:10: Invalid expression; Expected the start of an expression, but found an invalid expression token."},
		{"nothing to serve", base, "registrar config r.hcl: nothing to serve: set operator_socket, listen or both"},
		{"listen without workload API", base + "listen = \":8444\"\n",
			"registrar config r.hcl: listen needs workload_api_socket (the SPIRE agent socket giving the registrar's SVID and bundles)"},
		{"jwt without workload API", base + "operator_socket = \"/o\"\njwt_audience = \"x\"\n",
			"registrar config r.hcl: jwt_audience needs workload_api_socket (the SPIRE agent socket giving the JWT bundles)"},
		{"bad listen", base + "listen = \"8444\"\nworkload_api_socket = \"/w\"\n",
			"registrar config r.hcl: listen: address 8444: missing port in address"},
		{"bad trust domain", strings.Replace(base, "example.org", "Example Org", 1) + "operator_socket = \"/o\"\n",
			"registrar config r.hcl: trust_domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
		{"bad parent id", base + "operator_socket = \"/o\"\nparent_id = \"node1\"\n", "registrar config r.hcl: parent_id: scheme is missing or invalid"},
		{"bad mode", base + "operator_socket = \"/o\"\noperator_socket_mode = \"0666\"\n",
			`registrar config r.hcl: operator_socket_mode "0666": want "0600" or "0660"`},
		{"unknown key in metrics", base + "operator_socket = \"/o\"\nmetrics {\n  lisen = \":9091\"\n}\n", "registrar config:\n" +
			`r.hcl:5:9: Missing required argument; The argument "listen" is required, but no definition was found.` + "\n" +
			`r.hcl:6:3: Unsupported argument; An argument named "lisen" is not expected here. Did you mean "listen"?`},
		{"bad metrics listen", base + "operator_socket = \"/o\"\nmetrics {\n  listen = \"9091\"\n}\n",
			"registrar config r.hcl: metrics.listen: address 9091: missing port in address"},
		{"bad witness_url", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  witness_url = \"ftp://w\"\n}\n",
			`registrar config r.hcl:7:17: audit.witness_url "ftp://w": want http(s)://host[:port]`},
		{"bad witness_key", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  witness_url = \"http://w:1\"\n  witness_key = \"nope\"\n}\n",
			`registrar config r.hcl:8:17: audit.witness_key "nope": want a cosignature/v1 verifier key (agentid audit witness keygen): malformed verifier id`},
		{"task signer_id", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  signer_id = \"spiffe://example.org/agent/a/task/T\"\n}\n",
			`registrar config r.hcl:7:15: audit.signer_id "spiffe://example.org/agent/a/task/T" is an agent task's identity: task SVIDs never sign logs`},
		{"bad rotate_interval", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  rotate_interval = \"-1h\"\n}\n",
			`registrar config r.hcl:7:21: audit.rotate_interval "-1h": want a duration such as "24h": negative`},
		{"negative max_segments", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  max_segments = -1\n}\n",
			`registrar config r.hcl:7:18: audit.max_segments -1: want 0 (keep every file) or the number of files to keep`},
		{"bad mysql log", base + "operator_socket = \"/o\"\naudit {\n  mysql {\n    dsn = \"u@unix(/run/mysqld/mysqld.sock)/agentid\"\n    log = \"\"\n  }\n}\n",
			`registrar config r.hcl:8:11: audit.mysql.log: want a name of 1 to 190 characters, one per writer`},
		{"bad durability", base + "operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  durability = \"often\"\n}\n",
			`registrar config r.hcl:7:16: audit.durability: audit: durability "often": want batch, every or none`},
		{"bad ttl", base + "operator_socket = \"/o\"\nmax_jwt_svid_ttl = \"-5m\"\n",
			`registrar config r.hcl: max_jwt_svid_ttl "-5m": want a positive duration such as "1h" or "5m"`},
		{"negative recreate_quiet_period", base + "operator_socket = \"/o\"\nrecreate_quiet_period = \"-1m\"\n",
			`registrar config r.hcl:5:25: recreate_quiet_period "-1m": want a duration such as "6m" (at least max_jwt_svid_ttl + 12s; "0s" turns it off)`},
		{"bad recreate_quiet_period", base + "operator_socket = \"/o\"\nrecreate_quiet_period = \"soon\"\n",
			`registrar config r.hcl:5:25: recreate_quiet_period "soon": want a duration such as "6m" (at least max_jwt_svid_ttl + 12s; "0s" turns it off)`},
		{"recreate_quiet_period typo", base + "operator_socket = \"/o\"\nrecreate_quiet_perod = \"6m\"\n", "registrar config:\n" +
			`r.hcl:5:1: Unsupported argument; An argument named "recreate_quiet_perod" is not expected here. Did you mean "recreate_quiet_period"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src), "r.hcl")
			if err == nil || err.Error() != tt.err {
				t.Errorf("got  %v\nwant %s", err, tt.err)
			}
		})
	}
	cfg, err := ParseConfig([]byte(base+"operator_socket = \"/o\"\n"), "r.hcl")
	if err != nil || cfg.OperatorSocketMode != DefaultOperatorSocketMode || cfg.SelectorType != "agentid" || cfg.ParentID != "" || cfg.MetricsListen != "" {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
	cfg, err = ParseConfig([]byte(base+"operator_socket = \"/o\"\naudit {\n  path = \"a\"\n  max_bytes = 1048576\n  rotate_interval = \"24h\"\n  max_segments = 30\n}\n"), "r.hcl")
	if err != nil || cfg.AuditMaxBytes != 1<<20 || cfg.AuditRotateInterval != 24*time.Hour || cfg.AuditMaxSegments != 30 {
		t.Errorf("rotation and retention: %+v %v", cfg, err)
	}
}

func TestListenUnix(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "op.sock")
	l, err := ListenUnix(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket %v %v", fi, err)
	}
	if l.Addr().String() != path {
		t.Errorf("Addr %s", l.Addr())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("leftovers beside the socket: %v", entries)
	}
	go func(l net.Listener) {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}(l)
	if _, err := ListenUnix(path, 0o600); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second listener: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}

	// A stale socket (its server died without removing it) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l, err = ListenUnix(path, 0o600)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := ListenUnix(file, 0o600); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("over a file: %v", err)
	}
	if _, err := ListenUnix(path, 0o666); err == nil || !strings.Contains(err.Error(), "want 0600 or 0660") {
		t.Errorf("mode 0666: %v", err)
	}
}
