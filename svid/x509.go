package svid

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Extension returns the non-critical X.509 extension that carries the
// claims: a DER UTF8String holding the canonical JSON, under oid (nil means
// DefaultOID). The claims must pass [Claims.Check].
func (c Claims) Extension(oid asn1.ObjectIdentifier) (pkix.Extension, error) {
	if err := c.Check(); err != nil {
		return pkix.Extension{}, err
	}
	if oid == nil {
		oid = DefaultOID
	}
	value, err := asn1.MarshalWithParams(string(c.AppendJSON(nil)), "utf8")
	if err != nil {
		return pkix.Extension{}, fail(ReasonMalformed, "%v", err)
	}
	return pkix.Extension{Id: oid, Value: value}, nil
}

// DecodeExtension decodes the claims from the extension's value. It checks
// the fields ([Claims.Check]) but not the SVID that carried them; use
// [FromCertificate] for that.
func DecodeExtension(ext pkix.Extension) (Claims, error) {
	if ext.Critical {
		return Claims{}, fail(ReasonCriticalExtension, "extension %s is marked critical", ext.Id)
	}
	// Longest DER header of an 8 KiB UTF8String: tag, 0x82, two length bytes.
	if len(ext.Value) > MaxJSONSize+4 {
		return Claims{}, fail(ReasonTooLarge, "extension of %d bytes", len(ext.Value))
	}
	var s string
	rest, err := asn1.UnmarshalWithParams(ext.Value, &s, "utf8")
	if err != nil {
		return Claims{}, fail(ReasonMalformed, "extension value is not a DER UTF8String: %v", err)
	}
	if len(rest) != 0 {
		return Claims{}, fail(ReasonMalformed, "%d bytes after the extension's UTF8String", len(rest))
	}
	return Parse([]byte(s))
}

// FromCertificate finds the claims extension in cert (the OID of
// [WithOID], default DefaultOID), decodes it and validates the claims
// against the certificate's SPIFFE ID ([Claims.Validate]).
//
// A certificate without the extension is not an agent task: found is false
// and err is nil. It does not verify the certificate's signature chain; use
// [FromX509SVID] on an SVID from a trusted source, or verify first.
func FromCertificate(cert *x509.Certificate, opts ...Option) (c Claims, found bool, err error) {
	cfg := newConfig(opts)
	ext, found, err := findExtension(cert, cfg.oid)
	if !found || err != nil {
		return Claims{}, found, err
	}
	if c, err = DecodeExtension(ext); err != nil {
		return Claims{}, true, err
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return Claims{}, true, fail(ReasonNotTaskID, "certificate carries task claims but no SPIFFE ID: %v", err)
	}
	return c, true, c.Validate(id, opts...)
}

// FromX509SVID is [FromCertificate] on the SVID's leaf certificate.
func FromX509SVID(s *x509svid.SVID, opts ...Option) (Claims, bool, error) {
	if s == nil || len(s.Certificates) == 0 {
		return Claims{}, false, fail(ReasonMalformed, "X.509-SVID has no certificate")
	}
	return FromCertificate(s.Certificates[0], opts...)
}

func findExtension(cert *x509.Certificate, oid asn1.ObjectIdentifier) (pkix.Extension, bool, error) {
	var ext pkix.Extension
	found := false
	for _, e := range cert.Extensions {
		if !e.Id.Equal(oid) {
			continue
		}
		if found {
			return pkix.Extension{}, true, fail(ReasonMalformed, "extension %s appears twice", oid)
		}
		ext, found = e, true
	}
	return ext, found, nil
}
