package svid_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func extension(t *testing.T, c svid.Claims) pkix.Extension {
	t.Helper()
	ext, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ext
}

func TestExtensionGolden(t *testing.T) {
	ext := extension(t, researcher())
	if !ext.Id.Equal(svid.DefaultOID) || ext.Critical {
		t.Fatalf("extension %v critical=%v", ext.Id, ext.Critical)
	}
	golden(t, "extension.der", ext.Value)
	if ext.Value[0] != 0x0c { // UTF8String
		t.Fatalf("tag %#x, want UTF8String", ext.Value[0])
	}
}

func TestFromCertificate(t *testing.T) {
	ca := testca.New(t, td, now)
	cert := ca.CreateX509SVID(selfID, testca.WithExtensions(extension(t, researcher()))).Certificates[0]

	got, found, err := svid.FromCertificate(cert, svid.WithTime(now))
	if err != nil || !found {
		t.Fatalf("FromCertificate = %v, %v", found, err)
	}
	if !got.Equal(researcher()) {
		t.Fatalf("got %+v", got)
	}

	// The default OID is not the only one: a deployment's own OID works and
	// the default then finds nothing.
	own := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 9}
	ext, _ := researcher().Extension(own)
	cert2 := ca.CreateX509SVID(selfID, testca.WithExtensions(ext)).Certificates[0]
	if _, found, err := svid.FromCertificate(cert2, svid.WithTime(now)); found || err != nil {
		t.Fatalf("default OID found claims under another OID: %v %v", found, err)
	}
	if _, found, err := svid.FromCertificate(cert2, svid.WithTime(now), svid.WithOID(own)); !found || err != nil {
		t.Fatalf("WithOID: %v %v", found, err)
	}
}

func TestFromCertificateNoExtension(t *testing.T) {
	ca := testca.New(t, td, now)
	s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/workload/web"))
	c, found, err := svid.FromX509SVID(s)
	if found || err != nil || !c.Equal(svid.Claims{}) {
		t.Fatalf("an SVID without the extension must be 'not an agent task': %v %v %+v", found, err, c)
	}
}

func TestFromCertificateRejects(t *testing.T) {
	ca := testca.New(t, td, now)
	good := extension(t, researcher())
	utf8Ext := func(s string) []byte { v, _ := asn1.MarshalWithParams(s, "utf8"); return v }
	raw := func(v []byte) pkix.Extension { return pkix.Extension{Id: svid.DefaultOID, Value: v} }
	goodJSON, _ := researcher().MarshalJSON()
	tests := []struct {
		name   string
		ext    pkix.Extension
		id     spiffeid.ID
		reason svid.Reason
	}{
		{"critical flag", pkix.Extension{Id: svid.DefaultOID, Critical: true, Value: good.Value}, selfID, svid.ReasonCriticalExtension},
		{"truncated DER", raw(good.Value[:len(good.Value)-5]), selfID, svid.ReasonMalformed},
		{"trailing DER", raw(append(bytes.Clone(good.Value), 0x05, 0x00)), selfID, svid.ReasonMalformed},
		{"not a UTF8String", raw(mustMarshal(t, 42)), selfID, svid.ReasonMalformed},
		{"PrintableString instead", raw(mustMarshalParams(t, "abc", "printable")), selfID, svid.ReasonMalformed},
		{"invalid UTF-8", raw(append([]byte{0x0c, 0x03}, 0xff, 0xfe, 0xfd)), selfID, svid.ReasonMalformed},
		{"oversized", raw(utf8Ext(strings.Repeat(" ", svid.MaxJSONSize+1))), selfID, svid.ReasonTooLarge},
		{"JSON with duplicate keys", raw(utf8Ext(strings.Replace(string(goodJSON), `"v":1`, `"v":1,"v":1`, 1))), selfID, svid.ReasonMalformed},
		{"path mismatch", good, spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-7"), svid.ReasonIDMismatch},
		{"claims on a non-task ID", good, spiffeid.RequireFromString("spiffe://example.org/workload/x"), svid.ReasonNotTaskID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := ca.CreateX509SVID(tc.id, testca.WithExtensions(tc.ext)).Certificates[0]
			_, found, err := svid.FromCertificate(cert, svid.WithTime(now))
			if !found {
				t.Fatal("extension not found")
			}
			wantReason(t, err, tc.reason)
		})
	}
}

func TestFromCertificateExpiredDeadline(t *testing.T) {
	ca := testca.New(t, td, now)
	s := ca.CreateX509SVID(selfID, testca.WithExtensions(extension(t, researcher())))
	_, _, err := svid.FromX509SVID(s, svid.WithTime(deadline.Add(time.Minute)))
	wantReason(t, err, svid.ReasonExpired)
	if _, _, err := svid.FromX509SVID(&x509svid.SVID{}); err == nil {
		t.Fatal("empty SVID accepted")
	}
}

// TestOpenSSLAndGoAcceptCertificate checks that the extension makes a
// certificate that both Go's parser and openssl accept, and that openssl
// shows the claims.
func TestOpenSSLAndGoAcceptCertificate(t *testing.T) {
	ca := testca.New(t, td, now)
	s := ca.CreateX509SVID(selfID, testca.WithExtensions(extension(t, researcher())))
	if _, err := x509.ParseCertificate(s.Certificates[0].Raw); err != nil {
		t.Fatalf("Go rejects the certificate: %v", err)
	}
	pemCerts, _ := testca.SVIDPEM(t, s)
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: only Go's parser was checked (make test installs openssl)")
		return
	}
	path := filepath.Join(t.TempDir(), "svid.pem")
	if err := os.WriteFile(path, pemCerts, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-in", path, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl rejects the certificate: %v\n%s", err, out)
	}
	for _, want := range []string{"1.3.6.1.4.1.32473.1.1:", `"agent":"researcher"`, "URI:" + selfID.String()} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "1.3.6.1.4.1.32473.1.1: critical") {
		t.Error("openssl shows the extension as critical")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshalParams(t *testing.T, v any, params string) []byte {
	t.Helper()
	b, err := asn1.MarshalWithParams(v, params)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
