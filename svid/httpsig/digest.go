package httpsig

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"

	"github.com/dunglas/httpsfv"
)

// ContentDigest is the Content-Digest field value of body (RFC 9530,
// sha-256): `sha-256=:<base64>:`.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// CheckContentDigest checks the Content-Digest field values against body:
// the sha-256 member must be present and match (other algorithms are not
// read: RFC 9530 leaves the choice to the recipient).
func CheckContentDigest(vals []string, body []byte) error {
	if len(vals) == 0 {
		return fail(ReasonComponents, "no Content-Digest")
	}
	d, err := httpsfv.UnmarshalDictionary(vals)
	if err != nil {
		return fail(ReasonMalformed, "Content-Digest is not an RFC 8941 dictionary: %v", err)
	}
	m, ok := d.Get("sha-256")
	if !ok {
		return fail(ReasonDigest, "Content-Digest has no sha-256 member (has %v)", d.Names())
	}
	it, ok := m.(httpsfv.Item)
	got, ok2 := it.Value.([]byte)
	if !ok || !ok2 {
		return fail(ReasonMalformed, "Content-Digest sha-256 is not a byte sequence")
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(got, sum[:]) {
		return fail(ReasonDigest, "Content-Digest sha-256 does not match the %d-byte body received", len(body))
	}
	return nil
}
