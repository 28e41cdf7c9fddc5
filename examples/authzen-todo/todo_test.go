// Package authzentodo holds the AuthZEN Todo interop scenario as agentid
// policy (policies/) and the test that drives the interop's published
// decision file against a running agentid-verifier.
package authzentodo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
)

// decisionFile is the interop's file: {"evaluation": [{request,
// expected: bool}], "evaluations": [{request, expected: [{decision}]}]}.
type decisionFile struct {
	Evaluation []struct {
		Request  json.RawMessage `json:"request"`
		Expected bool            `json:"expected"`
	} `json:"evaluation"`
	Evaluations []struct {
		Request  json.RawMessage `json:"request"`
		Expected json.RawMessage `json:"expected"`
	} `json:"evaluations"`
}

// startVerifier builds and starts a real agentid-verifier serving the
// check API with AuthZEN on a free loopback port, with this directory's
// policies and file bundles (no SPIRE: the scenario's subjects are users
// that the PEP asserts). It returns the base URL.
func startVerifier(t *testing.T) string {
	t.Helper()
	bin := spiretest.BuildCmd(t, "./cmd/agentid-verifier")
	dir := t.TempDir()
	policyDir, err := filepath.Abs("policies")
	if err != nil {
		t.Fatal(err)
	}
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, ca.BundlePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mport, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
trust_domain = "example.org"
policy_dir   = %q
files {
  x509_bundle = %q
}
audit {
  path = %q
}
check_api {
  listen = "127.0.0.1:%d"
}
authzen {
  subject_types = ["user"]
}
metrics {
  listen = "127.0.0.1:%d"
}
`, policyDir, bundle, filepath.Join(dir, "audit.log"), port, mport)
	cfgPath := filepath.Join(dir, "verifier.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := devstack.StartProcess("agentid-verifier", bin, []string{"-config", cfgPath}, nil, filepath.Join(dir, "verifier.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	ready := "http://127.0.0.1:" + strconv.Itoa(mport) + "/readyz"
	if err := p.WaitReady(context.Background(), 30*time.Second, func() error {
		resp, err := http.Get(ready)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

func post(t *testing.T, url string, body []byte) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, out)
	}
	return out
}

// TestTodoInterop drives every case of the interop's decision file
// (decisions-authorization-api-1_0-02.json: 40 single and 3 batch
// evaluations) over HTTP against agentid-verifier, comparing the way the
// interop runner does: the single decision, and the batch's evaluations
// array exactly.
func TestTodoInterop(t *testing.T) {
	raw, err := os.ReadFile("testdata/decisions-authorization-api-1_0-02.json")
	if err != nil {
		t.Fatal(err)
	}
	var df decisionFile
	if err := json.Unmarshal(raw, &df); err != nil {
		t.Fatal(err)
	}
	if len(df.Evaluation) != 40 || len(df.Evaluations) != 3 {
		t.Fatalf("%d single and %d batch cases, want 40 and 3", len(df.Evaluation), len(df.Evaluations))
	}
	base := startVerifier(t)
	pass := 0
	for i, c := range df.Evaluation {
		var d struct {
			Decision bool `json:"decision"`
		}
		out := post(t, base+"/access/v1/evaluation", c.Request)
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatalf("evaluation %d: %s: %v", i, out, err)
		}
		if d.Decision != c.Expected {
			t.Errorf("evaluation %d: decision %v, want %v: %s", i, d.Decision, c.Expected, c.Request)
			continue
		}
		pass++
	}
	for i, c := range df.Evaluations {
		var got struct {
			Evaluations []any `json:"evaluations"`
		}
		out := post(t, base+"/access/v1/evaluations", c.Request)
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("evaluations %d: %s: %v", i, out, err)
		}
		var want []any
		json.Unmarshal(c.Expected, &want)
		if !reflect.DeepEqual(got.Evaluations, want) {
			t.Errorf("evaluations %d: %s, want %s", i, out, c.Expected)
			continue
		}
		pass++
	}
	t.Logf("%d of %d interop cases pass", pass, len(df.Evaluation)+len(df.Evaluations))
}

// TestTodoPolicyTests runs the policy's own test cases (todo_test.hcl),
// which state AuthZEN requests, as `agentid policy test` does.
func TestTodoPolicyTests(t *testing.T) {
	set, diags := policies.Load("policies")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("the example policy must load without warnings: %v", diags)
	}
	files, err := policies.ReadTestDir("policies")
	if err != nil {
		t.Fatal(err)
	}
	cases, diags := set.LoadTests(files)
	if diags.HasErrors() || len(cases) == 0 {
		t.Fatalf("%d cases: %v", len(cases), diags)
	}
	for _, r := range set.RunTests(cases) {
		if r.Failure != "" {
			t.Errorf("%s: %s", r.Case.Name, r.Failure)
		}
	}
}
