package verifier

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Peer is an authenticated caller. It is immutable: its fields are read
// through accessors, and Claims returns a copy, so a handler cannot change
// what the next request with the same credential is authorized with (the
// Authenticator caches one Peer per credential).
type Peer struct {
	id         spiffeid.ID
	claims     *svid.Claims // shared with the cache: never handed out
	kind       string
	serial     string
	jwtID      string
	expires    time.Time
	issued     time.Time // X.509 NotBefore or JWT iat (zero when unknown)
	claimsJSON []byte
	claimsB64  string       // base64url of claimsJSON: the x-agentid-claims header
	audience   []string     // a JWT-SVID's aud (shared with the cache: never handed out)
	hdrs       *peerHeaders // ext_authz responses, shared by the copies
	// rec is the peer's audit record fields, encoded once (nil: encoded
	// per record).
	rec *audit.PeerFields
}

// withRecord makes the peer's audit record fields, once it is complete.
func (p Peer) withRecord() Peer {
	p.rec = audit.NewPeerFields(p.id.String(), p.serial, p.jwtID, p.claimsJSON)
	return p
}

// setClaims attaches c, rendered once for the audit log and the headers.
func (p *Peer) setClaims(c *svid.Claims) {
	p.claims, p.claimsJSON = c, c.AppendJSON(nil)
	p.claimsB64 = base64.RawURLEncoding.EncodeToString(p.claimsJSON)
	p.expires = minTime(p.expires, c.Deadline)
}

// NewPeer is a peer authenticated by other means (tests, adapters that
// verified the credential themselves). claims may be nil; they are copied.
func NewPeer(id spiffeid.ID, claims *svid.Claims) Peer {
	p := Peer{id: id, kind: "other", hdrs: new(peerHeaders)}
	if claims != nil {
		c := claims.Clone()
		p.expires = c.Deadline
		p.setClaims(&c)
	}
	return p.withRecord()
}

// ID is the caller's SPIFFE ID.
func (p *Peer) ID() spiffeid.ID { return p.id }

// Claims returns a copy of the caller's task claims; ok is false when the
// caller is not an agent task (an SVID without claims).
func (p *Peer) Claims() (c svid.Claims, ok bool) {
	if p == nil || p.claims == nil {
		return svid.Claims{}, false
	}
	return p.claims.Clone(), true
}

// Agent, Task and Principal are the claims' fields ("" for a non-task peer),
// without copying the claims.
func (p *Peer) Agent() string     { return p.field(func(c *svid.Claims) string { return c.Agent }) }
func (p *Peer) Task() string      { return p.field(func(c *svid.Claims) string { return c.Task }) }
func (p *Peer) Principal() string { return p.field(func(c *svid.Claims) string { return c.Principal }) }

// HasScope reports whether the task holds scope s.
func (p *Peer) HasScope(s string) bool { return p.IsTask() && p.claims.HasScope(s) }

func (p *Peer) field(f func(*svid.Claims) string) string {
	if !p.IsTask() {
		return ""
	}
	return f(p.claims)
}

// Kind is "x509" or "jwt": how the caller authenticated ("other" for NewPeer).
func (p *Peer) Kind() string { return p.kind }

// Serial is the X.509-SVID's serial number (hex); JWTID the JWT-SVID's
// "jti" claim or, without one, the SHA-256 of the token.
func (p *Peer) Serial() string { return p.serial }
func (p *Peer) JWTID() string  { return p.jwtID }

// Expires is when this authentication stops being valid: the SVID's expiry
// or the task deadline, whichever is first.
func (p *Peer) Expires() time.Time { return p.expires }

// ClaimsJSON is a copy of the canonical JSON of the claims (nil without).
func (p *Peer) ClaimsJSON() []byte { return slices.Clone(p.claimsJSON) }

// HasAudience reports whether the peer authenticated with a JWT-SVID
// that names aud (false for an X.509-SVID).
func (p *Peer) HasAudience(aud string) bool { return slices.Contains(p.audience, aud) }

// IsTask reports whether the peer is an agent task.
func (p *Peer) IsTask() bool { return p != nil && p.claims != nil }

// policyPeer is the peer as the policy sees it (read-only by contract).
func (p *Peer) policyPeer() policies.Peer { return policies.Peer{ID: p.id, Claims: p.claims} }

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
// per credential kind and credential (bounded; see CacheSize and CacheTTL):
// a credential is only ever found again as the kind it was verified as, so
// a certificate's bytes cannot stand in for a bearer token.
type Authenticator struct {
	cfg   Config
	cache *cache[Peer]
	aud   []string // Audiences and ResourceAudiences: what a JWT-SVID is verified against
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
	// ResourceAudiences are audiences accepted only where they are asked
	// for: by a Verifier query naming one (Query.Audience: an MCP
	// gateway's resource). A JWT-SVID naming one of them and none of
	// Audiences is refused (wrong_audience) by every other query and by
	// Authenticate and JWT, so that a token minted for the gateway is no
	// bearer for the daemon's other front-ends.
	ResourceAudiences []string
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
	aud := slices.Concat(cfg.Audiences, cfg.ResourceAudiences)
	return &Authenticator{cfg: cfg, cache: newCache[Peer](cfg.CacheSize), aud: aud}
}

// Flush forgets every cached peer: the next use of each credential is
// verified against the bundles again. Call it when the bundles change
// (the daemon does whenever its Workload API sources update), so that a
// CA or JWT key removed from the bundle stops working at once rather than
// within CacheTTL.
func (a *Authenticator) Flush() { a.cache.clear() }

// Authenticate verifies a credential of any kind. A JWT-SVID must name one
// of Config.Audiences.
func (a *Authenticator) Authenticate(c Credential) (Peer, error) {
	p, err := a.authenticate(c)
	if err == nil {
		err = a.generalAudience(&p)
	}
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}

// generalAudience refuses a JWT-SVID that names only ResourceAudiences,
// for a use that names no resource.
func (a *Authenticator) generalAudience(p *Peer) error {
	if p.kind != "jwt" || len(a.cfg.ResourceAudiences) == 0 || slices.ContainsFunc(p.audience, func(s string) bool { return slices.Contains(a.cfg.Audiences, s) }) {
		return nil
	}
	return deny(ReasonWrongAudience, fmt.Errorf("JWT-SVID audience %q names none of %q (a resource's own audience is accepted only by that resource)", p.audience, a.cfg.Audiences))
}

// authenticate is Authenticate accepting ResourceAudiences too: the
// pipeline checks the audience against its query.
func (a *Authenticator) authenticate(c Credential) (Peer, error) {
	switch c.Kind {
	case CredentialX509:
		return a.Certificates(c.Chain)
	case CredentialX509Verified:
		if len(c.Chain) == 0 {
			return a.VerifiedCertificate(nil)
		}
		return a.VerifiedCertificate(c.Chain[0])
	case CredentialPEM:
		return a.PEM(c.Value)
	case CredentialJWT:
		return a.jwt(c.Value)
	case CredentialMalformed:
		return Peer{}, deny(ReasonBadCredential, errors.New(c.Value))
	}
	return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate or bearer JWT-SVID"))
}

// authenticateInto is Authenticate writing the peer into p: a credential
// found in the cache is copied from it once, in a small stack frame (the
// common case on a request path); anything else goes to Authenticate.
func (a *Authenticator) authenticateInto(c *Credential, p *Peer) error {
	if cached := a.lookup(c); cached != nil {
		*p = *cached
		return nil
	}
	return a.authenticateSlow(c, p)
}

// lookup finds c in the cache under its kind, as the first step of each
// kind's method below does, or returns nil.
func (a *Authenticator) lookup(c *Credential) *Peer {
	var key cacheKey
	switch c.Kind {
	case CredentialX509, CredentialX509Verified:
		if len(c.Chain) == 0 || c.Chain[0] == nil {
			return nil
		}
		key = cacheKey{c.Kind, bytesKey(c.Chain[0].Raw)}
	case CredentialPEM:
		key = cacheKey{CredentialPEM, c.Value}
	case CredentialJWT:
		if a.cfg.JWTBundles == nil || len(a.aud) == 0 {
			return nil // refused by JWT, cached or not
		}
		key = cacheKey{CredentialJWT, c.Value}
	default:
		return nil
	}
	return a.cache.lookup(key, a.cfg.Clock())
}

//go:noinline
func (a *Authenticator) authenticateSlow(c *Credential, p *Peer) error {
	var err error
	*p, err = a.authenticate(*c)
	return err
}

// Certificates authenticates a peer by its certificate chain (leaf first),
// verifying it against the X.509 bundles. Use it for chains the TLS stack
// has not verified (ext_authz) or verified with other roots.
func (a *Authenticator) Certificates(chain []*x509.Certificate) (Peer, error) {
	if len(chain) == 0 {
		return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate"))
	}
	key := cacheKey{CredentialX509, bytesKey(chain[0].Raw)}
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	gen := a.cache.generation()
	p, err := a.verifyChain(chain, now)
	if err != nil {
		return Peer{}, err
	}
	a.cache.put(key, p, minTime(p.expires, now.Add(a.cfg.CacheTTL)), now, gen)
	return p, nil
}

// VerifiedCertificate authenticates a peer whose chain the TLS handshake
// already verified against the same bundles (go-spiffe tlsconfig): only the
// SPIFFE ID, the trust domain and the claims are checked.
func (a *Authenticator) VerifiedCertificate(leaf *x509.Certificate) (Peer, error) {
	if leaf == nil {
		return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate"))
	}
	key := cacheKey{CredentialX509Verified, bytesKey(leaf.Raw)}
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	gen := a.cache.generation()
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
	a.cache.put(key, p, minTime(p.expires, now.Add(a.cfg.CacheTTL)), now, gen)
	return p, nil
}

// PEM authenticates a peer from a PEM certificate chain, optionally
// URL-encoded as Envoy sends it in ext_authz's source.certificate.
func (a *Authenticator) PEM(data string) (Peer, error) {
	key := cacheKey{CredentialPEM, data}
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	gen := a.cache.generation()
	chain, err := parsePEMChain(data)
	if err != nil {
		return Peer{}, deny(ReasonBadCredential, err)
	}
	p, err := a.verifyChain(chain, now)
	if err != nil {
		return Peer{}, err
	}
	a.cache.put(key, p, minTime(p.expires, now.Add(a.cfg.CacheTTL)), now, gen)
	return p, nil
}

// JWT authenticates a peer by a JWT-SVID bearer token: its form and
// algorithm, one of the configured audiences and expiry (each refused with
// its own reason), the signature against the JWT bundles, then the claims.
func (a *Authenticator) JWT(token string) (Peer, error) {
	p, err := a.jwt(token)
	if err == nil {
		err = a.generalAudience(&p)
	}
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}

func (a *Authenticator) jwt(token string) (Peer, error) {
	if a.cfg.JWTBundles == nil || len(a.aud) == 0 {
		return Peer{}, deny(ReasonBadCredential, errors.New("JWT-SVIDs are not accepted here (no JWT bundle or audience configured)"))
	}
	key := cacheKey{CredentialJWT, token}
	now := a.cfg.Clock()
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	gen := a.cache.generation()
	if err := a.precheckJWT(token, now); err != nil {
		return Peer{}, err
	}
	s, err := jwtsvid.ParseAndValidate(token, a.cfg.JWTBundles, a.aud)
	if err != nil {
		// Form, algorithm, kid, typ, sub, audience, nbf and expiry were
		// checked above: what is left is the signature and the key that
		// made it (and go-spiffe's own clock, within a minute of ours).
		return Peer{}, deny(ReasonUntrusted, err)
	}
	if err := a.checkDomain(s.ID); err != nil {
		return Peer{}, err
	}
	p := Peer{id: s.ID, kind: "jwt", expires: s.Expiry, jwtID: jwtID(s, token), audience: slices.Clone(s.Audience), hdrs: new(peerHeaders)}
	if iat, ok := s.Claims["iat"].(float64); ok {
		p.issued = time.Unix(int64(iat), 0)
	}
	c, found, err := svid.FromJWTSVID(s, a.claimOptions(now)...)
	if err != nil {
		return Peer{}, deny(ReasonInvalidClaims, err)
	}
	if found {
		p.setClaims(&c)
	} else if err := a.noClaims(s.ID); err != nil {
		return Peer{}, err
	}
	p = p.withRecord()
	a.cache.put(key, p, minTime(p.expires, now.Add(a.cfg.CacheTTL)), now, gen)
	return p, nil
}

// jwtAlgorithms are the JWS algorithms a JWT-SVID may use (the SPIFFE
// JWT-SVID specification's list, as go-spiffe accepts them).
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

// precheckJWT classifies what can be told without the bundle, by type
// rather than by error text: the compact form, the algorithm (none or a
// MAC is untrusted), the required claims, the audience and the expiry.
func (a *Authenticator) precheckJWT(token string, now time.Time) error {
	if len(token) > MaxBearerLen {
		return deny(ReasonBadCredential, fmt.Errorf("JWT of %d bytes exceeds %d", len(token), MaxBearerLen))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return deny(ReasonBadCredential, fmt.Errorf("not a compact JWS: %d parts", len(parts)))
	}
	hdr, err := decodeSegment(parts[0])
	if err != nil {
		return deny(ReasonBadCredential, fmt.Errorf("JWT header: %w", err))
	}
	if alg, _ := hdr["alg"].(string); !slices.Contains(jwtAlgorithms, alg) {
		return deny(ReasonUntrusted, fmt.Errorf("JWT algorithm %q is not accepted (unsigned or not an asymmetric signature)", alg))
	}
	if parts[2] == "" {
		return deny(ReasonUntrusted, errors.New("JWT has no signature"))
	}
	if kid, _ := hdr["kid"].(string); kid == "" {
		return deny(ReasonBadCredential, errors.New("JWT header has no kid"))
	}
	if typ, ok := hdr["typ"]; ok && typ != "JWT" && typ != "JOSE" {
		return deny(ReasonBadCredential, fmt.Errorf("JWT typ %v is not JWT or JOSE", typ))
	}
	claims, err := decodeSegment(parts[1])
	if err != nil {
		return deny(ReasonBadCredential, fmt.Errorf("JWT claims: %w", err))
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return deny(ReasonBadCredential, errors.New("JWT has no sub claim"))
	}
	if _, err := spiffeid.FromString(sub); err != nil {
		return deny(ReasonBadCredential, fmt.Errorf("JWT sub is not a SPIFFE ID: %w", err))
	}
	expN, ok := claims["exp"].(json.Number)
	if !ok {
		return deny(ReasonBadCredential, errors.New("JWT has no numeric exp claim"))
	}
	exp, err := expN.Float64()
	if err != nil {
		return deny(ReasonBadCredential, fmt.Errorf("JWT exp claim: %w", err))
	}
	var auds []string
	switch aud := claims["aud"].(type) {
	case string:
		auds = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return deny(ReasonBadCredential, errors.New("JWT aud claim is not a list of strings"))
			}
			auds = append(auds, s)
		}
	default:
		return deny(ReasonBadCredential, errors.New("JWT aud claim is missing or not a string or a list of strings"))
	}
	if !slices.ContainsFunc(auds, func(s string) bool { return slices.Contains(a.aud, s) }) {
		return deny(ReasonWrongAudience, fmt.Errorf("JWT audience %q names none of %q", auds, a.aud))
	}
	if nbf, ok := claims["nbf"].(json.Number); ok {
		if f, err := nbf.Float64(); err == nil && now.Add(time.Minute).Before(time.Unix(int64(f), 0)) {
			return deny(ReasonBadCredential, fmt.Errorf("JWT not valid before %s", time.Unix(int64(f), 0).UTC().Format(time.RFC3339)))
		}
	}
	if e := time.Unix(int64(exp), 0); !now.Before(e) {
		return deny(ReasonExpired, fmt.Errorf("JWT-SVID expired at %s", e.UTC().Format(time.RFC3339)))
	}
	return nil
}

// decodeSegment decodes a JWS segment strictly: keys are matched exactly,
// as go-jose reads them, and other spellings of a key are refused.
func decodeSegment(seg string) (map[string]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	v, err := strictjson.Decode(raw, 16, 2)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

func (a *Authenticator) verifyChain(chain []*x509.Certificate, now time.Time) (Peer, error) {
	if a.cfg.X509Bundles == nil {
		return Peer{}, deny(ReasonUntrusted, errors.New("no X.509 bundle configured"))
	}
	id, verified, err := x509svid.Verify(chain, a.cfg.X509Bundles, x509svid.WithTime(now))
	if err != nil {
		var ie x509.CertificateInvalidError
		if errors.As(err, &ie) && ie.Reason == x509.Expired {
			return Peer{}, deny(ReasonExpired, err)
		}
		return Peer{}, deny(ReasonUntrusted, err)
	}
	if err := intermediatesOf(id.TrustDomain(), verified); err != nil {
		return Peer{}, deny(ReasonUntrusted, err)
	}
	p, err := a.peerFromLeaf(id, chain[0], now)
	if err != nil {
		return Peer{}, err
	}
	// The peer (and its cache entry) ends with the first certificate of
	// its chain to expire; the leaf's NotAfter is only the latest end.
	for _, c := range verified[0][1:] {
		p.expires = minTime(p.expires, c.NotAfter)
	}
	return p, nil
}

// intermediatesOf refuses verified chains with an intermediate CA whose
// SPIFFE ID is of another trust domain than the leaf's: under a root
// shared by several trust domains (one UpstreamAuthority above their
// SPIRE servers), another domain's server CA must not mint this domain's
// IDs. go-spiffe checks the leaf's ID only. The roots are the bundle's,
// trusted as configured.
func intermediatesOf(td spiffeid.TrustDomain, chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		for i := 1; i < len(chain)-1; i++ {
			for _, u := range chain[i].URIs {
				if !strings.EqualFold(u.Scheme, "spiffe") {
					continue
				}
				ca, err := spiffeid.FromURI(u)
				if err != nil || !ca.MemberOf(td) {
					return fmt.Errorf("intermediate CA %q is of another trust domain than the leaf's %q", u, td)
				}
			}
		}
	}
	return nil
}

func (a *Authenticator) peerFromLeaf(id spiffeid.ID, leaf *x509.Certificate, now time.Time) (Peer, error) {
	if err := a.checkDomain(id); err != nil {
		return Peer{}, err
	}
	p := Peer{id: id, kind: "x509", serial: leaf.SerialNumber.Text(16), expires: leaf.NotAfter, issued: leaf.NotBefore, hdrs: new(peerHeaders)}
	c, found, err := svid.FromCertificate(leaf, a.claimOptions(now)...)
	if err != nil {
		return Peer{}, deny(ReasonInvalidClaims, err)
	}
	if found {
		p.setClaims(&c)
	} else if err := a.noClaims(id); err != nil {
		return Peer{}, err
	}
	return p.withRecord(), nil
}

// noClaims refuses an SVID without agentid claims whose SPIFFE ID has a
// task's shape: to the verifier it would be a plain workload, which the
// liveness hook does not check (a revoked task's ID minted without claims,
// or a composer writing another extension OID than the verifier reads).
func (a *Authenticator) noClaims(id spiffeid.ID) error {
	if svid.IsTaskID(id) {
		return deny(ReasonInvalidClaims, fmt.Errorf("%s has a task's SPIFFE ID but no agentid claims (X.509 extension %s or JWT claim)", id, a.cfg.ExtensionOID))
	}
	return nil
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
