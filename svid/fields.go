package svid

import (
	"net/url"
	"strconv"
	"unicode/utf8"
)

// ValidName reports whether s is a valid agent or task name:
// [A-Za-z0-9._-]{1,128}.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	// "." and ".." are not valid SPIFFE ID path segments.
	return s != "." && s != ".."
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '.' || b == '_' || b == '-'
}

// ValidScopeToken reports whether s is an OAuth 2.0 scope-token (RFC 6749
// 3.3: %x21 / %x23-5B / %x5D-7E) of at most MaxScopeLen bytes.
func ValidScopeToken(s string) bool {
	if len(s) == 0 || len(s) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// ValidModel reports whether s is a valid model identifier: 1 to 256 bytes
// of [A-Za-z0-9._:/@+-], e.g. "openai/gpt-4o-2024-08-06" or
// "local/llama3@sha256:…".
func ValidModel(s string) bool {
	if len(s) == 0 || len(s) > MaxModelLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !isNameByte(b) && b != ':' && b != '/' && b != '@' && b != '+' {
			return false
		}
	}
	return true
}

// ValidPromptDigest reports whether s is "sha256:" followed by 64 lower-case
// hex digits.
func ValidPromptDigest(s string) bool {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		b := s[i]
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return false
		}
	}
	return true
}

// ValidPrincipal reports whether s is an absolute URI (with a scheme) of at
// most MaxPrincipalLen bytes, e.g. "spiffe://example.org/user/alice" or
// "mailto:alice@example.org".
func ValidPrincipal(s string) bool {
	if len(s) == 0 || len(s) > MaxPrincipalLen || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] == 0x7f {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != ""
}

// Check validates every field's presence, charset and length, without
// looking at the SVID that carries the claims or at the time.
func (c Claims) Check() error {
	switch {
	case c.V != Version:
		return fail(ReasonUnsupportedVersion, "v is %d, want %d", c.V, Version)
	case !ValidName(c.Agent):
		return fail(ReasonInvalidField, "agent %q is not [A-Za-z0-9._-]{1,128}", c.Agent)
	case !ValidName(c.Task):
		return fail(ReasonInvalidField, "task %q is not [A-Za-z0-9._-]{1,128}", c.Task)
	case !ValidModel(c.Model):
		return fail(ReasonInvalidField, "model %q is not [A-Za-z0-9._:/@+-]{1,256}", c.Model)
	case !ValidPromptDigest(c.Prompt):
		return fail(ReasonInvalidField, "prompt %q is not sha256:<64 lower-case hex>", c.Prompt)
	case len(c.Scope) > MaxScopes:
		return fail(ReasonTooLarge, "%d scopes, at most %d", len(c.Scope), MaxScopes)
	case !ValidPrincipal(c.Principal):
		return fail(ReasonInvalidField, "principal %q is not an absolute URI", c.Principal)
	case len(c.Chain) > MaxChain:
		return fail(ReasonTooLarge, "chain of %d, at most %d", len(c.Chain), MaxChain)
	case c.Deadline.IsZero():
		return fail(ReasonInvalidField, "deadline missing")
	case c.jsonLen() > MaxJSONSize:
		return fail(ReasonTooLarge, "%d bytes of canonical JSON, at most %d", c.jsonLen(), MaxJSONSize)
	}
	for i, s := range c.Scope {
		if !ValidScopeToken(s) {
			return fail(ReasonInvalidField, "scope[%d] %q is not a scope token", i, s)
		}
		for _, prev := range c.Scope[:i] {
			if prev == s {
				return fail(ReasonInvalidField, "scope %q repeated", s)
			}
		}
	}
	for i, id := range c.Chain {
		if _, _, err := parseTaskIDString(id); err != nil {
			return fail(ReasonBadChainEntry, "chain[%d] %q: %v", i, id, err)
		}
	}
	return nil
}

// jsonLen is the length of the canonical JSON without building it.
func (c Claims) jsonLen() int {
	const fixed = len(`{"v":,"agent":"","task":"","model":"","prompt":"","scope":[],"principal":"","chain":[],"deadline":""}`)
	var buf [64]byte
	n := fixed + len(strconv.Itoa(c.V)) + strLen(c.Agent) + strLen(c.Task) + strLen(c.Model) +
		strLen(c.Prompt) + strLen(c.Principal) + len(c.Deadline.UTC().AppendFormat(buf[:0], timeFormat))
	for _, list := range [2][]string{c.Scope, c.Chain} {
		for i, s := range list {
			n += strLen(s) + 2 // quotes
			if i > 0 {
				n++ // comma
			}
		}
	}
	return n
}

func strLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}
