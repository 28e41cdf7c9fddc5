package httpsig

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"

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
	if k, dup := repeatedKey(vals); dup {
		// RFC 8941 keeps one of a repeated key: the signed field would name
		// a digest that was not checked
		return fail(ReasonMalformed, "Content-Digest repeats the member %q", k)
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

// repeatedKey reports a key that occurs more than once among the members
// of a structured-field dictionary that has already parsed (members are
// split at commas outside quoted strings; byte sequences hold no commas).
func repeatedKey(vals []string) (string, bool) {
	seen := map[string]bool{}
	for _, v := range vals {
		inQuote, escaped, start := false, false, 0
		member := func(end int) (string, bool) {
			m := strings.TrimSpace(v[start:end])
			k := m
			if i := strings.IndexAny(m, "=;"); i >= 0 {
				k = m[:i]
			}
			if seen[k] {
				return k, true
			}
			seen[k] = true
			return "", false
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case escaped:
				escaped = false
			case inQuote && c == '\\':
				escaped = true
			case c == '"':
				inQuote = !inQuote
			case c == ',' && !inQuote:
				if k, dup := member(i); dup {
					return k, true
				}
				start = i + 1
			}
		}
		if k, dup := member(len(v)); dup {
			return k, true
		}
	}
	return "", false
}
