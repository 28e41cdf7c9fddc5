package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/daemon"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const kbPolicy = `
rule "kb-read" {
  effect = "allow"
  reason = "kb:read holders read the knowledge base"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`

// testWitnessKey is a cosignature/v1 verifier key (agentid audit witness keygen).
const testWitnessKey = "witness.example.org+4313ad7d+BGWXdBlxDkrJhhIQnaJ+fcU5c6vdvCqwVir85Jd8ZjQ1"

// auditBlock is a verifier configuration whose audit block (line 6) has
// path on line 7 and extra from line 8.
func auditBlock(extra string) string {
	return "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\naudit {\n path = \"a\"\n" + extra + "\n}\ncheck_api {\n listen = \":0\"\n}\n"
}

// TestAuditWriterSettings: signer_id, witness_url and witness_key reach
// the writer's options; receipts are on unless turned off.
func TestAuditWriterSettings(t *testing.T) {
	cfg, err := daemon.ParseConfig([]byte(auditBlock(` signer_id = "spiffe://example.org/verifier"`+"\n"+` witness_url = "https://witness.example.org:8480"`+"\n"+` witness_key = "`+testWitnessKey+`"`)), "v.hcl")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.Options.SignerID.String() != "spiffe://example.org/verifier" || a.Options.Witness == nil || a.WitnessURL != "https://witness.example.org:8480" || !a.Receipts {
		t.Fatalf("audit config %+v", a)
	}
	cfg, err = daemon.ParseConfig([]byte(auditBlock(` max_bytes = 1048576`+"\n"+` rotate_interval = "24h"`+"\n"+` max_segments = 30`)), "v.hcl")
	if o := cfg.Audit.Options; err != nil || o.MaxBytes != 1<<20 || o.RotateInterval != 24*time.Hour || o.MaxSegments != 30 {
		t.Fatalf("rotation and retention: %+v %v", cfg.Audit, err)
	}
	cfg, err = daemon.ParseConfig([]byte(auditBlock(` receipts = false`)), "v.hcl")
	if err != nil || cfg.Audit.Receipts || cfg.Audit.Options.Witness != nil {
		t.Fatalf("receipts = false: %+v %v", cfg.Audit, err)
	}
}

// TestIdentityHeadersConfig: identity_headers selects the headers sent
// upstream; without it, verifier.DefaultHeaders.
func TestIdentityHeadersConfig(t *testing.T) {
	src := "trust_domain = \"example.org\"\npolicy_dir = \"p\"\n%sworkload_api {\n socket = \"/s\"\n}\next_authz {\n listen = \":0\"\n}\n"
	cfg, err := daemon.ParseConfig(fmt.Appendf(nil, src, `identity_headers = ["spiffe_id", "task", "claims"]`+"\n"), "v.hcl")
	if err != nil || cfg.IdentityHeaders != verifier.SendSPIFFEID|verifier.SendTask|verifier.SendClaims {
		t.Fatalf("%v %v", cfg, err)
	}
	if cfg, err = daemon.ParseConfig(fmt.Appendf(nil, src, ""), "v.hcl"); err != nil || cfg.IdentityHeaders != 0 {
		t.Fatalf("default: %v %v", cfg, err)
	}
}

// TestMaxFormBodyConfig: max_form_body sets Verifier.MaxFormBody; a
// negative or absurd one is an error naming the line.
func TestMaxFormBodyConfig(t *testing.T) {
	src := "trust_domain = \"example.org\"\npolicy_dir = \"p\"\n%sworkload_api {\n socket = \"/s\"\n}\next_authz {\n listen = \":0\"\n}\n"
	cfg, err := daemon.ParseConfig(fmt.Appendf(nil, src, "max_form_body = 8388608\n"), "v.hcl")
	if err != nil || cfg.MaxFormBody != 8<<20 {
		t.Fatalf("%v %v", cfg, err)
	}
	if _, err := daemon.ParseConfig(fmt.Appendf(nil, src, "max_form_body = -1\n"), "v.hcl"); err == nil || !strings.HasPrefix(err.Error(), "v.hcl:3:") || !strings.Contains(err.Error(), "max_form_body -1") {
		t.Fatalf("negative: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown key", "trust_domain = \"example.org\"\n\npolicy_dirr = \"x\"\n", `v.hcl:3:1: Unsupported argument; An argument named "policy_dirr" is not expected here. Did you mean "policy_dir"?`},
		{"missing policy_dir", "trust_domain = \"example.org\"\n", `v.hcl:1:1: Missing required argument; The argument "policy_dir" is required`},
		{"no bundle source", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\next_authz {\n listen = \":0\"\n}\n", "v.hcl: a workload_api block or a files block is required"},
		{"nothing to serve", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\n", "v.hcl: nothing to serve"},
		{"bad durability", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\naudit {\n path = \"a\"\n durability = \"often\"\n}\n", `v.hcl:8:15: audit.durability: audit: durability "often"`},
		{"bad witness_url", auditBlock(` witness_url = "witness:8480"`), `v.hcl:8:16: audit.witness_url "witness:8480": want http(s)://host[:port]`},
		{"bad witness_key", auditBlock(` witness_url = "http://witness:8480"` + "\n" + ` witness_key = "witness.example.org+1234"`), `v.hcl:9:16: audit.witness_key "witness.example.org+1234": want a cosignature/v1 verifier key`},
		{"witness_key alone", auditBlock(` witness_key = "` + testWitnessKey + `"`), `v.hcl:8:16: audit.witness_key needs witness_url`},
		{"task signer_id", auditBlock(` signer_id = "spiffe://example.org/agent/a/task/T-1"`), `v.hcl:8:14: audit.signer_id "spiffe://example.org/agent/a/task/T-1" is an agent task's identity`},
		{"bad signer_id", auditBlock(` signer_id = "verifier"`), `v.hcl:8:14: audit.signer_id "verifier": scheme is missing or invalid`},
		{"bad rotate_interval", auditBlock(` rotate_interval = "daily"`), `v.hcl:8:20: audit.rotate_interval "daily": want a duration such as "24h"`},
		{"negative max_segments", auditBlock(` max_segments = -2`), `v.hcl:8:17: audit.max_segments -2: want 0 (keep every file) or the number of files to keep`},
		{"path and mysql", auditBlock(" mysql {\n  dsn = \"u@tcp(db:3306)/agentid\"\n  log = \"v\"\n }"), `v.hcl:7:9: audit: path (a file log) and a mysql block (a log in MariaDB/MySQL) exclude each other`},
		{"bad mysql dsn", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\naudit {\n mysql {\n  dsn = \"db:3306\"\n  log = \"v\"\n }\n}\ncheck_api {\n listen = \":0\"\n}\n", `v.hcl:8:9: audit.mysql.dsn: invalid DSN`},
		{"neither path nor mysql", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\naudit {\n durability = \"batch\"\n}\ncheck_api {\n listen = \":0\"\n}\n", `audit: give path (a file log) or a mysql { dsn, log } block`},
		{"syntax", "trust_domain = \n", "v.hcl:1:16: Invalid expression"},
		{"bad on_failure", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\naudit {\n path = \"a\"\n on_failure = \"ignore\"\n}\ncheck_api {\n listen = \":0\"\n}\n", `audit.on_failure "ignore": want "deny" (default) or "allow"`},
		{"bad caller", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\ncheck_api {\n listen = \":0\"\n allowed_callers = [\"envoy\"]\n}\n", `check_api.allowed_callers: "envoy"`},
		{"unknown identity header", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nidentity_headers = [\"spiffe_id\", \"model\"]\nworkload_api {\n socket = \"/s\"\n}\ncheck_api {\n listen = \":0\"\n}\n", `v.hcl:3:20: identity_headers: unknown identity header "model" (expected one of agent, claims, principal, rule, spiffe_id, task)`},
		{"no identity header", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nidentity_headers = []\nworkload_api {\n socket = \"/s\"\n}\ncheck_api {\n listen = \":0\"\n}\n", `v.hcl:3:20: identity_headers: no identity header named`},
		{"bad signatures.window", sigBlock(` window = "soon"`), `v.hcl:8:11: signatures.window "soon": want a positive duration such as "60s"`},
		{"bad signatures.algorithms", sigBlock(` algorithms = ["ecdsa-p256-sha256", "hmac-sha256"]`), `v.hcl:8:15: signatures.algorithms: "hmac-sha256" is not an asymmetric RFC 9421 algorithm agentid verifies`},
		{"bad signatures.max_nonces", sigBlock(` max_nonces = -1`), `v.hcl:8:15: signatures.max_nonces -1: want a positive number`},
		{"bad signatures.max_recorded_body", sigBlock(` max_recorded_body = 0`), `v.hcl:8:22: signatures.max_recorded_body 0: want a positive number of bytes`},
		{"signatures typo", sigBlock(` requre = true`), `v.hcl:8:2: Unsupported argument; An argument named "requre" is not expected here.`},
		{"callers without SVID", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nfiles {\n x509_bundle = \"b\"\n}\next_authz {\n listen = \":0\"\n allowed_callers = [\"spiffe://example.org/envoy\"]\n}\n", "ext_authz.allowed_callers needs the verifier's own SVID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := daemon.ParseConfig([]byte(tc.src), "v.hcl")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

type fixture struct {
	dir, policyDir, auditPath string
	cfgSrc                    string // the configuration it was started with
	ca                        *testca.CA
	d                         *daemon.Daemon
}

func start(t *testing.T) *fixture {
	t.Helper()
	return startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\next_authz {\n  listen = \"127.0.0.1:0\"\n}\n", "  checkpoint_every = 2\n")
}

// startWith starts a daemon with the given front-end blocks (metrics is
// always on), extra lines in the audit block and extra policy files.
func startWith(t testing.TB, frontends, auditExtra string, extraPolicy ...string) *fixture {
	t.Helper()
	return startWithCA(t, testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now()), frontends, auditExtra, extraPolicy...)
}

// startWithCA is startWith with the trust domain's CA given.
func startWithCA(t testing.TB, ca *testca.CA, frontends, auditExtra string, extraPolicy ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, policyDir: filepath.Join(dir, "policies"), auditPath: filepath.Join(dir, "audit", "audit.log"), ca: ca}
	os.Mkdir(f.policyDir, 0o755)
	write(t, filepath.Join(f.policyDir, "kb.hcl"), kbPolicy)
	for i, p := range extraPolicy {
		write(t, filepath.Join(f.policyDir, "extra"+strconv.Itoa(i)+".hcl"), p)
	}
	write(t, filepath.Join(dir, "bundle.pem"), string(f.ca.BundlePEM()))
	certs, key := testca.SVIDPEM(t, f.ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier")))
	write(t, filepath.Join(dir, "svid.pem"), string(certs))
	write(t, filepath.Join(dir, "key.pem"), string(key))
	cfgSrc := `
trust_domain = "example.org"
policy_dir   = "` + f.policyDir + `"
files {
  x509_bundle = "` + filepath.Join(dir, "bundle.pem") + `"
  svid_cert   = "` + filepath.Join(dir, "svid.pem") + `"
  svid_key    = "` + filepath.Join(dir, "key.pem") + `"
}
audit {
  path = "` + f.auditPath + `"
` + auditExtra + `}
metrics {
  listen = "127.0.0.1:0"
}
` + frontends
	f.cfgSrc = cfgSrc
	cfg, err := daemon.ParseConfig([]byte(cfgSrc), "verifier.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if f.d, err = daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.d.Close() })
	return f
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) check(t *testing.T, cert, method, path string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"certificate": cert, "action": map[string]string{"kind": "http", "method": method, "path": path}})
	resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) taskCert(t testing.TB, scope ...string) string {
	certs, _ := testca.SVIDPEM(t, f.taskSVID(t, f.ca, scope...))
	return string(certs)
}

func (f *fixture) taskSVID(t testing.TB, ca *testca.CA, scope ...string) *x509svid.SVID {
	c := svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt: svid.PromptDigest([]byte("p")), Scope: scope, Principal: "spiffe://example.org/user/alice",
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	ext, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"), testca.WithExtensions(ext))
}

func metricsText(t testing.TB, f *fixture) string {
	resp, err := http.Get("http://" + f.d.Addr("metrics").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestDaemonCheckReloadAndAudit(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.d.Run(ctx) }()

	reader := f.taskCert(t, "kb:read")
	if out := f.check(t, reader, "GET", "/kb/doc"); out["allow"] != true || out["rules"].([]any)[0] != "kb-read (kb.hcl:2)" {
		t.Fatalf("allowed check: %v", out)
	}
	if out := f.check(t, f.taskCert(t, "tickets:write"), "GET", "/kb/doc"); out["allow"] != false {
		t.Fatalf("denied check: %v", out)
	}
	if out := f.check(t, "garbage", "GET", "/kb/doc"); out["allow"] != false || out["deny_code"] != "bad_credential" {
		t.Fatalf("garbage credential: %v", out)
	}

	// A broken policy keeps the last good one, and says so.
	write(t, filepath.Join(f.policyDir, "kb.hcl"), kbPolicy+"\nrule \"broken\" {\n  effect = \"maybe\"\n}\n")
	if err := f.d.Reload(); err == nil {
		t.Fatal("broken policy reloaded")
	}
	if out := f.check(t, reader, "GET", "/kb/doc"); out["allow"] != true {
		t.Fatalf("after a failed reload the old policy must stay: %v", out)
	}
	m := metricsText(t, f)
	// 1, or 2 when the file watch reloaded the broken file too meanwhile
	if !regexp.MustCompile(`agentid_policy_reloads_total\{result="error"\} [12]\n`).MatchString(m) {
		t.Errorf("metrics lack agentid_policy_reloads_total{result=\"error\"} 1 (or 2)")
	}
	for _, want := range []string{"agentid_policy_last_reload_ok 0", `agentid_decisions_total{decision="allow",frontend="check_api",rule="kb-read"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// A good change is picked up by the file watch (no SIGHUP).
	write(t, filepath.Join(f.policyDir, "kb.hcl"), strings.Replace(kbPolicy, `"GET"`, `"POST"`, 1))
	deadline := time.Now().Add(10 * time.Second)
	for f.check(t, reader, "GET", "/kb/doc")["allow"] == true {
		if time.Now().After(deadline) {
			t.Fatal("the file watch did not reload the policy")
		}
		time.Sleep(20 * time.Millisecond)
	}

	resp, err := http.Get("http://" + f.d.Addr("metrics").String() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every decision is in the log, signed by the verifier's SVID.
	files, _ := audit.Files(f.auditPath)
	sum, err := audit.Verify(files, audit.VerifyOptions{Bundle: f.ca.X509Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Checkpoints == 0 || sum.Unsigned != 0 || sum.Signers[0] != "spiffe://example.org/verifier" {
		t.Fatalf("audit summary %+v", sum)
	}
}

// sigBlock is a minimal configuration with a signatures block holding line
// (at line 8).
func sigBlock(line string) string {
	return "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\nsignatures {\n require = true\n" + line + "\n}\ncheck_api {\n listen = \":0\"\n}\n"
}
