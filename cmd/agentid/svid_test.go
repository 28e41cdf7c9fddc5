package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	testTD   = spiffeid.RequireTrustDomainFromString("example.org")
	testNow  = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	testTask = spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
)

func testClaims() svid.Claims {
	return svid.Claims{
		V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Scope:     []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline:  time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}
}

// runCLI runs agentid in-process and returns the exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := (&cli{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}).main(args)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func taskSVIDFiles(t *testing.T, c svid.Claims) (svidPath, bundlePath string, ca *testca.CA) {
	t.Helper()
	dir := t.TempDir()
	ca = testca.New(t, testTD, testNow)
	ext, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := testca.SVIDPEM(t, ca.CreateX509SVID(testTask, testca.WithExtensions(ext)))
	return writeFile(t, dir, "svid.pem", certs), writeFile(t, dir, "bundle.pem", ca.BundlePEM()), ca
}

func TestSVIDInspectText(t *testing.T) {
	p, _, _ := taskSVIDFiles(t, testClaims())
	code, out, errs := runCLI(t, "svid", "inspect", "--time", "2026-11-29T10:00:00Z", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"SPIFFE ID:    spiffe://example.org/agent/researcher/task/T-42",
		"Type:         X.509-SVID",
		"Not after:    2026-11-29T11:00:00Z",
		"Agent:        researcher",
		"Scope:        kb:read",
		"Depth:        1",
		"Chain[0]:     spiffe://example.org/agent/planner/task/T-41",
		"Deadline:     2026-11-29T12:00:00Z",
	} {
		if !strings.Contains(squash(out), squash(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSVIDInspectJSON(t *testing.T) {
	p, _, _ := taskSVIDFiles(t, testClaims())
	code, out, errs := runCLI(t, "svid", "inspect", "--json", "--time", "2026-11-29T10:00:00Z", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		SPIFFEID string          `json:"spiffe_id"`
		Task     bool            `json:"task"`
		Claims   json.RawMessage `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c, err := svid.Parse(r.Claims)
	if err != nil || !c.Equal(testClaims()) || !r.Task || r.SPIFFEID != testTask.String() {
		t.Fatalf("json report %+v claims %+v err %v", r, c, err)
	}
}

func TestSVIDInspectNotATask(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, testNow)
	certs, _ := testca.SVIDPEM(t, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/web")))
	code, out, _ := runCLI(t, "svid", "inspect", writeFile(t, dir, "s.pem", certs))
	if code != 0 || !strings.Contains(out, "none (not an agent task)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestSVIDVerify(t *testing.T) {
	p, bundle, _ := taskSVIDFiles(t, testClaims())
	code, out, errs := runCLI(t, "svid", "verify", "--bundle", bundle, "--time", "2026-11-29T10:00:00Z", p)
	if code != 0 || !strings.Contains(out, "verified against the bundle") {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}

	// A foreign CA with the same OID: the chain does not verify.
	_, otherBundle, _ := taskSVIDFiles(t, testClaims())
	code, _, errs = runCLI(t, "svid", "verify", "--bundle", otherBundle, "--time", "2026-11-29T10:00:00Z", p)
	if code != 1 || !strings.Contains(errs, "verification failed: x509svid: could not verify leaf certificate") {
		t.Fatalf("forged SVID: exit %d: %s", code, errs)
	}

	// Past the task deadline but within the certificate's life: the claims fail.
	c := testClaims()
	c.Deadline = testNow.Add(30 * time.Minute)
	p2, bundle2, _ := taskSVIDFiles(t, c)
	code, out, errs = runCLI(t, "svid", "verify", "--bundle", bundle2, "--time", "2026-11-29T10:45:00Z", p2)
	if code != 1 || !strings.Contains(errs, "task claims rejected: svid: claims rejected: expired") || !strings.Contains(out, "REJECTED") {
		t.Fatalf("expired claims: exit %d: %s\n%s", code, errs, out)
	}

	code, _, errs = runCLI(t, "svid", "verify", p)
	if code != 2 || !strings.Contains(errs, "usage") {
		t.Fatalf("missing --bundle: exit %d %s", code, errs)
	}
}

func TestSVIDVerifyJWT(t *testing.T) {
	wall := time.Now()
	ca := testca.New(t, testTD, wall)
	c := testClaims()
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	tok := ca.CreateJWTSVID(testTask, []string{"kb"}, c.JWTClaims())
	dir := t.TempDir()
	tokPath := writeFile(t, dir, "token.jwt", []byte(tok+"\n"))
	jwks, err := ca.JWTBundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bundle := writeFile(t, dir, "bundle.json", jwks)
	code, out, errs := runCLI(t, "svid", "verify", "--bundle", bundle, "--audience", "kb", tokPath)
	if code != 0 || !strings.Contains(squash(out), "Type: JWT-SVID") || !strings.Contains(squash(out), "Agent: researcher") {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	code, _, errs = runCLI(t, "svid", "verify", "--bundle", bundle, "--audience", "other", tokPath)
	if code != 1 || !strings.Contains(errs, "audience") {
		t.Fatalf("wrong audience: exit %d: %s", code, errs)
	}
}

func TestPromptHashAndVersion(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "prompt.txt", []byte("test"))
	code, out, _ := runCLI(t, "prompt", "hash", p)
	if code != 0 || out != "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n" {
		t.Fatalf("prompt hash: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "prompt", "hash"); code != 2 || !strings.Contains(errs, "usage") {
		t.Fatalf("no files: %d %s", code, errs)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "agentid ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "nope"); code != 2 || !strings.Contains(errs, `unknown command "nope"`) {
		t.Fatalf("unknown command: %d %s", code, errs)
	}
}

// squash collapses runs of spaces, so that tests don't depend on column widths.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}
