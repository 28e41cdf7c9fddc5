package svid

import (
	"strconv"
	"time"
	"unicode/utf8"
)

const timeFormat = time.RFC3339Nano

// MarshalJSON returns the canonical JSON of the claims: keys in contract
// order (v, agent, task, model, prompt, scope, principal, chain, deadline),
// no insignificant spaces, every key present ("scope" and "chain" as [] when
// empty), the deadline as RFC 3339 in UTC. It does not validate; see
// [Claims.Check].
func (c Claims) MarshalJSON() ([]byte, error) {
	return c.AppendJSON(make([]byte, 0, 256)), nil
}

// AppendJSON appends the canonical JSON of the claims to b.
func (c Claims) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(c.V), 10)
	b = appendField(b, "agent", c.Agent)
	b = appendField(b, "task", c.Task)
	b = appendField(b, "model", c.Model)
	b = appendField(b, "prompt", c.Prompt)
	b = appendList(b, "scope", c.Scope)
	b = appendField(b, "principal", c.Principal)
	b = appendList(b, "chain", c.Chain)
	b = appendField(b, "deadline", c.Deadline.UTC().Format(timeFormat))
	return append(b, '}')
}

func appendField(b []byte, key, val string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, val)
}

func appendList(b []byte, key string, vals []string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: '"' and '\\' escaped, control
// characters as \u00XX, everything else (valid UTF-8) as is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// UnmarshalJSON decodes claims strictly; see [Parse].
func (c *Claims) UnmarshalJSON(data []byte) error {
	parsed, err := Parse(data)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// Parse decodes claims from JSON. It accepts any JSON spacing and key order
// but rejects: more than MaxJSONSize bytes, invalid UTF-8, duplicate or
// unknown keys, wrong types, trailing data, a "v" other than [Version], and
// fields that fail [Claims.Check].
//
// The decoder is a small hand-written scanner for the one shape the contract
// allows (an object of strings, string arrays and the integer "v"), so that
// a verifier can decode claims on every request without encoding/json's
// reflection; FuzzParse checks it against encoding/json.
func Parse(data []byte) (Claims, error) {
	if len(data) > MaxJSONSize {
		return Claims{}, fail(ReasonTooLarge, "%d bytes of JSON, at most %d", len(data), MaxJSONSize)
	}
	if !utf8.Valid(data) {
		return Claims{}, fail(ReasonMalformed, "JSON is not valid UTF-8")
	}
	s := scanner{data: data}
	c, err := s.object()
	if err != nil {
		return Claims{}, err
	}
	return c, c.Check()
}
