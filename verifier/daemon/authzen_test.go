package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentid/agentid/verifier/daemon"
)

const rolesPolicy = `
data "roles" {
  file = "data/roles.json"
}

rule "editors-write" {
  effect = "allow"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["write"]
    }
  }
  condition = contains(data.roles[subject.id], "editor")
}
`

func authzenPost(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// The AuthZEN API is served next to the check API, behind the same
// allowed callers; its decisions are counted and audited like the others;
// a changed data file reloads the policy and a broken one keeps the last
// good data.
func TestDaemonAuthZEN(t *testing.T) {
	f := startWith(t, `check_api {
  listen          = "127.0.0.1:0"
  allowed_callers = ["spiffe://example.org/gateway"]
}
authzen {
  subject_types = ["user"]
  max_batch     = 10
}
`, "")
	os.MkdirAll(filepath.Join(f.policyDir, "data"), 0o755)
	write(t, filepath.Join(f.policyDir, "data", "roles.json"), `{"alice": ["editor"], "bob": ["viewer"]}`)
	write(t, filepath.Join(f.policyDir, "roles.hcl"), rolesPolicy)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.d.Run(ctx) }()

	base := "https://" + f.d.Addr("check_api").String()
	client := func(id string) *http.Client {
		cfg := tlsconfig.MTLSClientConfig(f.ca.CreateX509SVID(spiffeid.RequireFromString(id)), f.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	req := func(user string) string {
		return `{"subject":{"type":"user","id":"` + user + `"},"action":{"name":"write"},"resource":{"type":"doc","id":"d1"}}`
	}
	if _, err := client("spiffe://example.org/other").Post(base+"/access/v1/evaluation", "application/json", strings.NewReader(req("alice"))); err == nil {
		t.Fatal("a caller not in allowed_callers was answered")
	}
	gw := client("spiffe://example.org/gateway")
	if st, out := authzenPost(t, gw, base+"/access/v1/evaluation", req("alice")); st != 200 || out != "{\"decision\":true}\n" {
		t.Fatalf("alice: %d %s", st, out)
	}
	if _, out := authzenPost(t, gw, base+"/access/v1/evaluation", req("bob")); out != "{\"decision\":false}\n" {
		t.Fatalf("bob: %s", out)
	}
	if st, out := authzenPost(t, gw, base+"/access/v1/evaluations", `{"subject":{"type":"user","id":"a"},"action":{"name":"write"},"evaluations":[`+strings.TrimSuffix(strings.Repeat(`{"resource":{"type":"d","id":"1"}},`, 11), ",")+`]}`); st != 400 || !strings.Contains(out, "at most 10") {
		t.Fatalf("batch over max_batch: %d %s", st, out)
	}
	resp, err := gw.Get(base + "/.well-known/authzen-configuration")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("discovery: %v %v", resp, err)
	}
	resp.Body.Close()

	// A changed data file is picked up by the watch.
	write(t, filepath.Join(f.policyDir, "data", "roles.json"), `{"alice": ["viewer"], "bob": ["editor"]}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out := authzenPost(t, gw, base+"/access/v1/evaluation", req("bob"))
		if out == "{\"decision\":true}\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the data change was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken data file keeps the last good policy and data.
	write(t, filepath.Join(f.policyDir, "data", "roles.json"), `{"alice": ["editor"],`)
	if err := f.d.Reload(); err == nil || !strings.Contains(err.Error(), "data/roles.json:1,22") {
		t.Fatalf("broken data reloaded: %v", err)
	}
	if _, out := authzenPost(t, gw, base+"/access/v1/evaluation", req("bob")); out != "{\"decision\":true}\n" {
		t.Fatalf("after a failed reload the last good data must stay: %s", out)
	}
	m := metricsText(t, f)
	for _, want := range []string{`agentid_decisions_total{decision="allow",frontend="authzen",rule="editors-write"}`, `agentid_decisions_total{decision="deny",frontend="authzen",rule=""}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(f.auditPath)
	if !bytes.Contains(log, []byte(`"subject":{"type":"user","id":"alice"},"resource":{"type":"doc","id":"d1"},"action":{"kind":"authzen","name":"write"},"decision":"allow"`)) ||
		!bytes.Contains(log, []byte(`"frontend":"authzen","caller":"spiffe://example.org/gateway"`)) {
		t.Fatalf("audit log:\n%s", log)
	}
}

func TestAuthZENConfigErrors(t *testing.T) {
	head := "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\n"
	for _, tc := range []struct{ src, want string }{
		{"authzen {\n}\next_authz {\n listen = \":0\"\n}\n", "add a check_api block"},
		{"check_api {\n listen = \":0\"\n}\nauthzen {\n subject_types = [\"agent_task\"]\n}\n", "cannot be asserted"},
		{"check_api {\n listen = \":0\"\n}\nauthzen {\n max_batch = 100000\n}\n", "authzen.max_batch 100000"},
		{"check_api {\n listen = \":0\"\n}\nauthzen {\n policy_decision_point = \"pdp.example.com\"\n}\n", "absolute https URL"},
		{"check_api {\n listen = \":0\"\n}\nauthzen {\n subject_type = [\"user\"]\n}\n", `Did you mean "subject_types"?`},
	} {
		if _, err := daemon.ParseConfig([]byte(head+tc.src), "v.hcl"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}
