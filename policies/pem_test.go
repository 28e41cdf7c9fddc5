package policies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
)

// researcherSVID writes, under dir, the PEM of an X.509-SVID of task T-42
// of the researcher carrying claims (nil: a plain SVID without the
// extension) and returns its path.
func researcherSVID(t *testing.T, dir, name string, c *svid.Claims, issued time.Time) string {
	t.Helper()
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), issued)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	var opts []testca.SVIDOption
	if c != nil {
		e, err := c.Extension(nil)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, testca.WithExtensions(e))
	}
	pemData, _ := testca.SVIDPEM(t, ca.CreateX509SVID(id, opts...))
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCertificatePeer runs policy tests whose peer is a saved X.509-SVID
// (peer { certificate = "..." }): the SPIFFE ID and claims come from the
// certificate, the path is relative to the test file, and a certificate
// whose task deadline has passed still loads (validated at the test's now,
// or at its NotBefore).
func TestCertificatePeer(t *testing.T) {
	dir := t.TempDir()
	issued := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC) // deadline long passed

	c := claims()
	c.Deadline = issued.Add(2 * time.Hour)
	researcherSVID(t, dir, "tests/certs/researcher.pem", c, issued)
	researcherSVID(t, dir, "tests/certs/plain.pem", nil, issued)
	write := func(name, src string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kb.hcl", `
rule "kb-read" {
  effect = "allow"
  peer {
    spiffe_id  = ["spiffe://example.org/agent/researcher/**"]
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`)
	write("tests/kb.hcl", `
test "saved researcher SVID reads" {
  peer {
    certificate = "certs/researcher.pem"
  }
  action = "http GET /kb/docs/1"
  now    = "2025-03-01T10:00:00Z"
  expect = "allow"
  rule   = "kb-read"
}

test "an SVID saved long ago still loads: without now its claims are checked at NotBefore" {
  peer {
    certificate = "certs/researcher.pem"
  }
  action = "http GET /kb/docs/1"
  expect = "allow"
}

test "plain SVID has no claims" {
  peer {
    certificate = "certs/plain.pem"
  }
  action = "http GET /kb/docs/1"
  expect = "deny"
}
`)
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	files, err := policies.ReadTestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases, diags := set.LoadTests(files)
	if diags.HasErrors() || len(cases) != 3 {
		t.Fatalf("%d cases: %v", len(cases), diags)
	}
	if got := cases[0].Input.Peer; got.ID.String() != "spiffe://example.org/agent/researcher/task/T-42" || got.Claims == nil || !got.Claims.Equal(*c) {
		t.Fatalf("peer from certificate = %v %+v, want the SVID's ID and claims %+v", got.ID, got.Claims, c)
	}
	if cases[2].Input.Peer.Claims != nil {
		t.Fatalf("plain SVID peer has claims %+v", cases[2].Input.Peer.Claims)
	}
	for _, r := range set.RunTests(cases) {
		if r.Failure != "" {
			t.Errorf("%s: %s", r.Case.Name, r.Failure)
		}
	}
}

// TestCertificatePeerErrors: each mistake in a certificate peer is one
// error at the attribute, with what was expected.
func TestCertificatePeerErrors(t *testing.T) {
	dir := t.TempDir()
	issued := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	c := claims()
	c.Deadline = issued.Add(2 * time.Hour)
	researcherSVID(t, dir, "r.pem", c, issued)
	if err := os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(`
rule "any" {
  effect = "allow"
}
`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, tt := range []struct {
		name, peer, now, want string
	}{
		{"both", `certificate = "r.pem"
    spiffe_id = "spiffe://example.org/x"`, "", `t_test.hcl:5,5-14: Conflicting peer attributes; certificate gives the SPIFFE ID and the claims: remove spiffe_id.`},
		{"with claims", `certificate = "r.pem"
    claims = { scope = [] }`, "", `Conflicting peer attributes; certificate gives the SPIFFE ID and the claims: remove claims.`},
		{"missing file", `certificate = "nope.pem"`, "", `t_test.hcl:4,19-29: Unreadable certificate; open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory.`},
		{"not DER", `certificate = "garbage.pem"`, "", `Invalid certificate; ` + filepath.Join(dir, "garbage.pem") + `: x509: malformed certificate.`},
		{"no certificate block", `certificate = "key.pem"`, "", `Invalid certificate; ` + filepath.Join(dir, "key.pem") + `: no PEM CERTIFICATE block.`},
		{"deadline passed at now", `certificate = "r.pem"`, `now = "2026-11-29T12:00:00Z"`, `Invalid certificate; ` + filepath.Join(dir, "r.pem") + `: svid: claims rejected: expired: deadline 2026-11-29T11:00:00Z passed at 2026-11-29T12:00:00Z.`},
		{"empty peer", ``, "", `t_test.hcl:3,3-7: Missing peer attribute; A peer block needs spiffe_id (with optional claims) or certificate.`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "\ntest \"t\" {\n  peer {\n    " + tt.peer + "\n  }\n  action = \"http GET /\"\n  expect = \"allow\"\n  " + tt.now + "\n}\n"
			_, diags := set.LoadTests([]policies.File{{Name: "t_test.hcl", Src: []byte(src), Path: filepath.Join(dir, "t_test.hcl")}})
			if !diags.HasErrors() {
				t.Fatalf("no error for\n%s", src)
			}
			if got := diags.Error(); !strings.Contains(got, tt.want) {
				t.Fatalf("error\n  %s\nwant it to contain\n  %s", got, tt.want)
			}
		})
	}
}

func TestPeerFromPEM(t *testing.T) {
	dir := t.TempDir()
	issued := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	c := claims()
	c.Deadline = issued.Add(2 * time.Hour)
	data, err := os.ReadFile(researcherSVID(t, dir, "r.pem", c, issued))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.PeerFromPEM(data, time.Time{})
	if err != nil || p.Claims == nil || !p.Claims.Equal(*c) {
		t.Fatalf("PeerFromPEM = %+v, %v", p, err)
	}
	if _, err := policies.PeerFromPEM(data, issued.Add(3*time.Hour)); err == nil {
		t.Fatal("PeerFromPEM accepted claims whose deadline had passed at now")
	}
	if _, err := policies.PeerFromPEM([]byte("not PEM"), time.Time{}); err == nil || err.Error() != "no PEM CERTIFICATE block" {
		t.Fatalf("PeerFromPEM(garbage) = %v", err)
	}
}
