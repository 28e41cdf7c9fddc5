// Package testca is an in-memory certificate authority for tests: it issues
// X.509-SVIDs (with any extra extensions, e.g. the task claims) and JWT-SVIDs
// for one trust domain, in the style of go-spiffe's internal test CA.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a root CA of one trust domain.
type CA struct {
	tb     testing.TB
	td     spiffeid.TrustDomain
	cert   *x509.Certificate
	key    crypto.Signer
	jwtKey crypto.Signer
	now    time.Time
	serial int64
}

// New returns a CA for td whose certificates are valid from now-1h to
// now+24h; now is also the default issue time of SVIDs.
func New(tb testing.TB, td spiffeid.TrustDomain, now time.Time) *CA {
	tb.Helper()
	ca := &CA{tb: tb, td: td, key: newKey(tb), jwtKey: newKey(tb), now: now}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"agentid test CA"}},
		URIs:                  []*url.URL{spiffeid.RequireFromPath(td, "").URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	ca.cert = ca.sign(tmpl, ca.key.Public(), tmpl, ca.key)
	ca.serial = 1
	return ca
}

// SVIDOption adjusts an issued X.509-SVID.
type SVIDOption func(*x509.Certificate)

// WithExtensions adds extra extensions to the SVID.
func WithExtensions(exts ...pkix.Extension) SVIDOption {
	return func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, exts...) }
}

// WithLifetime sets the SVID's validity window.
func WithLifetime(notBefore, notAfter time.Time) SVIDOption {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter }
}

// CreateX509SVID issues an X.509-SVID for id, valid for an hour from the
// CA's time unless an option says otherwise.
func (ca *CA) CreateX509SVID(id spiffeid.ID, opts ...SVIDOption) *x509svid.SVID {
	ca.tb.Helper()
	key := newKey(ca.tb)
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		URIs:         []*url.URL{id.URL()},
		NotBefore:    ca.now.Add(-time.Minute),
		NotAfter:     ca.now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, o := range opts {
		o(tmpl)
	}
	cert := ca.sign(tmpl, key.Public(), ca.cert, ca.key)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// CreateJWTSVID signs a JWT-SVID for id and audience with extra claims and
// returns the compact token.
func (ca *CA) CreateJWTSVID(id spiffeid.ID, audience []string, extra map[string]any) string {
	ca.tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ca.jwtKey, KeyID: "k1"}},
		new(jose.SignerOptions).WithType("JWT"))
	if err != nil {
		ca.tb.Fatal(err)
	}
	claims := map[string]any{
		"sub": id.String(),
		"aud": audience,
		"iat": ca.now.Unix(),
		"exp": ca.now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		ca.tb.Fatal(err)
	}
	return tok
}

// X509Bundle returns the CA's X.509 bundle.
func (ca *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// JWTBundle returns the CA's JWT bundle (key ID "k1").
func (ca *CA) JWTBundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(ca.td, map[string]crypto.PublicKey{"k1": ca.jwtKey.Public()})
}

// Cert returns the CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// BundlePEM returns the CA certificate as PEM.
func (ca *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// SVIDPEM returns the SVID's certificates and PKCS#8 key as PEM.
func SVIDPEM(tb testing.TB, s *x509svid.SVID) (certs, key []byte) {
	tb.Helper()
	certs, key, err := s.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return certs, key
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		ca.tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		ca.tb.Fatal(err)
	}
	return cert
}

func newKey(tb testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
