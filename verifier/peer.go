package verifier

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unsafe"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Peer is an authenticated caller.
type Peer struct {
	// ID is the caller's SPIFFE ID.
	ID spiffeid.ID
	// Claims are the caller's task claims; nil when the caller is not an
	// agent task (an SVID without claims).
	Claims *svid.Claims
	// Kind is "x509" or "jwt": how the caller authenticated.
	Kind string
	// Serial is the X.509-SVID's serial number (hex); JWTID the JWT-SVID's
	// "jti" claim or, without one, the SHA-256 of the token.
	Serial, JWTID string
	// Expires is when this authentication stops being valid: the SVID's
	// expiry or the task deadline, whichever is first.
	Expires time.Time
	// ClaimsJSON is the canonical JSON of Claims (nil without claims),
	// computed once per authentication for the audit log.
	ClaimsJSON []byte
}

// IsTask reports whether the peer is an agent task.
func (p *Peer) IsTask() bool { return p != nil && p.Claims != nil }

// DenyError says why a peer was not authenticated. Reason is a short,
// stable code for metrics and headers; Err the cause.
type DenyError struct {
	Reason string
	Err    error
}

func (e *DenyError) Error() string { return "verifier: " + e.Reason + ": " + e.Err.Error() }
func (e *DenyError) Unwrap() error { return e.Err }

// Deny reasons of peer authentication.
const (
	ReasonNoCredential  = "no_credential"
	ReasonBadCredential = "bad_credential" // unparsable certificate or token
	ReasonUntrusted     = "untrusted"      // chain or signature does not verify against the bundle
	ReasonForeignDomain = "foreign_trust_domain"
	ReasonExpired       = "expired"        // SVID expired
	ReasonInvalidClaims = "invalid_claims" // task claims rejected (svid.ValidationError)
	ReasonWrongAudience = "wrong_audience"
)

func deny(reason string, err error) *DenyError { return &DenyError{Reason: reason, Err: err} }

// Authenticator turns credentials into Peers: it verifies X.509-SVID chains
// and JWT-SVID signatures against the bundles, decodes and validates the task
// claims (svid), and enforces the allowed trust domains. Results are cached
// per credential (bounded; see CacheSize and CacheTTL).
type Authenticator struct {
	cfg   Config
	cache *cache[Peer]
}

// Config configures an Authenticator.
type Config struct {
	// X509Bundles verifies X.509-SVIDs; JWTBundles verifies JWT-SVIDs
	// (either may be nil when that kind is not accepted). A
	// workloadapi.X509Source / JWTSource keeps them current.
	X509Bundles x509bundle.Source
	JWTBundles  jwtbundle.Source
	// Audiences a JWT-SVID must name one of (required for JWT-SVIDs).
	Audiences []string
	// TrustDomains the peer and its chain must belong to. Empty: any trust
	// domain the bundles know, with chains inside the peer's own.
	TrustDomains []spiffeid.TrustDomain
	// ExtensionOID of the claims (default svid.DefaultOID).
	ExtensionOID asn1.ObjectIdentifier
	// Clock (default time.Now).
	Clock func() time.Time
	// CacheSize bounds the per-credential cache (default 10,000 peers);
	// CacheTTL bounds how long a result is reused (default 30 s), so that a
	// bundle change is seen within it.
	CacheSize int
	CacheTTL  time.Duration
}

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg Config) *Authenticator {
	if cfg.ExtensionOID == nil {
		cfg.ExtensionOID = svid.DefaultOID
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	return &Authenticator{cfg: cfg, cache: newCache[Peer](cfg.CacheSize)}
}

// Certificates authenticates a peer by its certificate chain (leaf first),
// verifying it against the X.509 bundles. Use it for chains the TLS stack
// has not verified (ext_authz) or verified with other roots.
func (a *Authenticator) Certificates(chain []*x509.Certificate) (Peer, error) {
	if len(chain) == 0 {
		return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate"))
	}
	key := bytesKey(chain[0].Raw)
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	p, err := a.verifyChain(chain, now)
	if err != nil {
		return Peer{}, err
	}
	a.cache.put(key, p, minTime(p.Expires, now.Add(a.cfg.CacheTTL)))
	return p, nil
}

// VerifiedCertificate authenticates a peer whose chain the TLS handshake
// already verified against the same bundles (go-spiffe tlsconfig): only the
// SPIFFE ID, the trust domain and the claims are checked.
func (a *Authenticator) VerifiedCertificate(leaf *x509.Certificate) (Peer, error) {
	if leaf == nil {
		return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate"))
	}
	key := bytesKey(leaf.Raw)
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	if now.After(leaf.NotAfter) {
		return Peer{}, deny(ReasonExpired, fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return Peer{}, deny(ReasonBadCredential, err)
	}
	p, err := a.peerFromLeaf(id, leaf, now)
	if err != nil {
		return Peer{}, err
	}
	a.cache.put(key, p, minTime(p.Expires, now.Add(a.cfg.CacheTTL)))
	return p, nil
}

// PEM authenticates a peer from a PEM certificate chain, optionally
// URL-encoded as Envoy sends it in ext_authz's source.certificate.
func (a *Authenticator) PEM(data string) (Peer, error) {
	key := data
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	chain, err := parsePEMChain(data)
	if err != nil {
		return Peer{}, deny(ReasonBadCredential, err)
	}
	p, err := a.verifyChain(chain, now)
	if err != nil {
		return Peer{}, err
	}
	a.cache.put(key, p, minTime(p.Expires, now.Add(a.cfg.CacheTTL)))
	return p, nil
}

// JWT authenticates a peer by a JWT-SVID bearer token: signature against the
// JWT bundles, one of the configured audiences, expiry, then the claims.
func (a *Authenticator) JWT(token string) (Peer, error) {
	if a.cfg.JWTBundles == nil || len(a.cfg.Audiences) == 0 {
		return Peer{}, deny(ReasonBadCredential, errors.New("JWT-SVIDs are not accepted here (no JWT bundle or audience configured)"))
	}
	key := token
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	s, err := jwtsvid.ParseAndValidate(token, a.cfg.JWTBundles, a.cfg.Audiences)
	if err != nil {
		return Peer{}, classifyJWTError(err)
	}
	if !s.Expiry.IsZero() && !now.Before(s.Expiry) {
		return Peer{}, deny(ReasonExpired, fmt.Errorf("JWT-SVID expired at %s", s.Expiry.UTC().Format(time.RFC3339)))
	}
	if err := a.checkDomain(s.ID); err != nil {
		return Peer{}, err
	}
	p := Peer{ID: s.ID, Kind: "jwt", Expires: s.Expiry, JWTID: jwtID(s, token)}
	c, found, err := svid.FromJWTSVID(s, a.claimOptions(now)...)
	if err != nil {
		return Peer{}, deny(ReasonInvalidClaims, err)
	}
	if found {
		p.Claims, p.ClaimsJSON = &c, c.AppendJSON(nil)
		p.Expires = minTime(p.Expires, c.Deadline)
	}
	a.cache.put(key, p, minTime(p.Expires, now.Add(a.cfg.CacheTTL)))
	return p, nil
}

func (a *Authenticator) verifyChain(chain []*x509.Certificate, now time.Time) (Peer, error) {
	if a.cfg.X509Bundles == nil {
		return Peer{}, deny(ReasonUntrusted, errors.New("no X.509 bundle configured"))
	}
	id, _, err := x509svid.Verify(chain, a.cfg.X509Bundles, x509svid.WithTime(now))
	if err != nil {
		var ie x509.CertificateInvalidError
		if errors.As(err, &ie) && ie.Reason == x509.Expired {
			return Peer{}, deny(ReasonExpired, err)
		}
		return Peer{}, deny(ReasonUntrusted, err)
	}
	return a.peerFromLeaf(id, chain[0], now)
}

func (a *Authenticator) peerFromLeaf(id spiffeid.ID, leaf *x509.Certificate, now time.Time) (Peer, error) {
	if err := a.checkDomain(id); err != nil {
		return Peer{}, err
	}
	p := Peer{ID: id, Kind: "x509", Serial: leaf.SerialNumber.Text(16), Expires: leaf.NotAfter}
	c, found, err := svid.FromCertificate(leaf, a.claimOptions(now)...)
	if err != nil {
		return Peer{}, deny(ReasonInvalidClaims, err)
	}
	if found {
		p.Claims, p.ClaimsJSON = &c, c.AppendJSON(nil)
		p.Expires = minTime(p.Expires, c.Deadline)
	}
	return p, nil
}

func (a *Authenticator) checkDomain(id spiffeid.ID) error {
	if len(a.cfg.TrustDomains) == 0 {
		return nil
	}
	for _, td := range a.cfg.TrustDomains {
		if id.MemberOf(td) {
			return nil
		}
	}
	return deny(ReasonForeignDomain, fmt.Errorf("%s is not in an allowed trust domain", id))
}

func (a *Authenticator) claimOptions(now time.Time) []svid.Option {
	opts := []svid.Option{svid.WithOID(a.cfg.ExtensionOID), svid.WithTime(now)}
	if len(a.cfg.TrustDomains) > 0 {
		opts = append(opts, svid.WithTrustDomains(a.cfg.TrustDomains...))
	}
	return opts
}

func classifyJWTError(err error) *DenyError {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "audience"):
		return deny(ReasonWrongAudience, err)
	case strings.Contains(msg, "expired") || strings.Contains(msg, "exp"):
		return deny(ReasonExpired, err)
	case strings.Contains(msg, "no JWT authority") || strings.Contains(msg, "no bundle") || strings.Contains(msg, "signature") || strings.Contains(msg, "cryptographic"):
		return deny(ReasonUntrusted, err)
	}
	return deny(ReasonBadCredential, err)
}

func jwtID(s *jwtsvid.SVID, token string) string {
	if jti, ok := s.Claims["jti"].(string); ok && jti != "" {
		return jti
	}
	return certKey([]byte(token))
}

func parsePEMChain(data string) ([]*x509.Certificate, error) {
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("certificate of %d bytes is too large", len(data))
	}
	// Envoy sends source.certificate URL-encoded (%XX escapes; '+' stays).
	if strings.Contains(data, "%") {
		decoded, err := url.PathUnescape(data)
		if err != nil {
			return nil, err
		}
		data = decoded
	}
	rest := []byte(data)
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return chain, nil
}

// bytesKey views raw as a string for a cache lookup without copying; the
// cache copies keys it keeps.
func bytesKey(raw []byte) string { return unsafe.String(unsafe.SliceData(raw), len(raw)) }

func certKey(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// X509Bundles is the X.509 bundle source the Authenticator verifies with.
func (a *Authenticator) X509Bundles() x509bundle.Source { return a.cfg.X509Bundles }
