package svid

import (
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultOID is the X.509 extension OID under which the claims travel unless
// configured otherwise: 1.3.6.1.4.1.32473.1.1.
//
// agentid has no IANA Private Enterprise Number of its own. 32473 is the
// number IANA reserves for documentation (RFC 5612), so the default cannot
// collide with any vendor's extension and fits Go's asn1.ObjectIdentifier
// (2.25.<uuid> arcs do not: x509.ParseCertificate rejects arcs above an int).
// Deployments that own a PEN should set their own OID, in the composer and
// in every verifier alike ("extension_oid").
var DefaultOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}

// Option configures decoding and validation.
type Option interface{ apply(*config) }

type config struct {
	oid          asn1.ObjectIdentifier
	now          func() time.Time
	trustDomains []spiffeid.TrustDomain
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithOID sets the X.509 extension OID (default DefaultOID).
func WithOID(oid asn1.ObjectIdentifier) Option {
	return optionFunc(func(c *config) { c.oid = oid })
}

// WithTime pins the clock used to check the deadline (default time.Now).
func WithTime(now time.Time) Option {
	return optionFunc(func(c *config) { c.now = func() time.Time { return now } })
}

// WithClock sets the clock used to check the deadline (default time.Now).
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

// WithTrustDomains restricts the SVID's and the chain members' trust domains.
// Without it the SVID's own trust domain is the only one allowed.
func WithTrustDomains(tds ...spiffeid.TrustDomain) Option {
	return optionFunc(func(c *config) { c.trustDomains = append(c.trustDomains, tds...) })
}

func newConfig(opts []Option) config {
	c := config{oid: DefaultOID, now: time.Now}
	for _, o := range opts {
		o.apply(&c)
	}
	return c
}

// ParseOID parses a dotted OID such as "1.3.6.1.4.1.32473.1.1", as written
// in the "extension_oid" settings. Every arc must fit an int.
func ParseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("svid: extension OID %q: need at least two arcs", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 || part != strconv.Itoa(n) {
			return nil, fmt.Errorf("svid: extension OID %q: arc %q is not a non-negative int without leading zeros", s, part)
		}
		oid[i] = n
	}
	if oid[0] > 2 || oid[0] < 2 && oid[1] > 39 {
		return nil, fmt.Errorf("svid: extension OID %q: invalid first arcs", s)
	}
	return oid, nil
}
