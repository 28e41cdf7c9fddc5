package svid

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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
func Parse(data []byte) (Claims, error) {
	if len(data) > MaxJSONSize {
		return Claims{}, fail(ReasonTooLarge, "%d bytes of JSON, at most %d", len(data), MaxJSONSize)
	}
	if !utf8.Valid(data) {
		return Claims{}, fail(ReasonMalformed, "JSON is not valid UTF-8")
	}
	c, err := decodeObject(json.NewDecoder(bytes.NewReader(data)))
	if err != nil {
		return Claims{}, err
	}
	return c, c.Check()
}

type decoder struct {
	*json.Decoder
	seen map[string]bool
}

func decodeObject(jd *json.Decoder) (Claims, error) {
	jd.UseNumber()
	d := decoder{Decoder: jd, seen: make(map[string]bool, 9)}
	if err := d.delim('{'); err != nil {
		return Claims{}, err
	}
	var c Claims
	for d.More() {
		if err := d.field(&c); err != nil {
			return Claims{}, err
		}
	}
	if err := d.delim('}'); err != nil {
		return Claims{}, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return Claims{}, fail(ReasonMalformed, "trailing data after the claims object")
	}
	if !d.seen["v"] {
		return Claims{}, fail(ReasonUnsupportedVersion, `"v" missing`)
	}
	return c, nil
}

func (d decoder) delim(want json.Delim) error {
	tok, err := d.Token()
	if err != nil {
		return fail(ReasonMalformed, "%v", err)
	}
	if got, ok := tok.(json.Delim); !ok || got != want {
		return fail(ReasonMalformed, "expected %q, found %v", want, tok)
	}
	return nil
}

func (d decoder) field(c *Claims) error {
	tok, err := d.Token()
	if err != nil {
		return fail(ReasonMalformed, "%v", err)
	}
	key, _ := tok.(string)
	if d.seen[key] {
		return fail(ReasonMalformed, "duplicate key %q", key)
	}
	d.seen[key] = true
	switch key {
	case "v":
		return d.version(&c.V)
	case "agent":
		return d.str(key, &c.Agent)
	case "task":
		return d.str(key, &c.Task)
	case "model":
		return d.str(key, &c.Model)
	case "prompt":
		return d.str(key, &c.Prompt)
	case "principal":
		return d.str(key, &c.Principal)
	case "scope":
		return d.list(key, MaxScopes, &c.Scope)
	case "chain":
		return d.list(key, MaxChain, &c.Chain)
	case "deadline":
		return d.deadline(&c.Deadline)
	}
	return fail(ReasonMalformed, "unknown key %q", key)
}

func (d decoder) version(v *int) error {
	tok, err := d.Token()
	if err != nil {
		return fail(ReasonMalformed, "%v", err)
	}
	n, ok := tok.(json.Number)
	if !ok {
		return fail(ReasonMalformed, `"v" must be a number, found %v`, tok)
	}
	i, err := strconv.Atoi(string(n))
	if err != nil {
		return fail(ReasonUnsupportedVersion, `"v" %s is not an integer`, n)
	}
	if i != Version {
		return fail(ReasonUnsupportedVersion, `"v" is %d, this build reads %d`, i, Version)
	}
	*v = i
	return nil
}

func (d decoder) str(key string, dst *string) error {
	tok, err := d.Token()
	if err != nil {
		return fail(ReasonMalformed, "%v", err)
	}
	s, ok := tok.(string)
	if !ok {
		return fail(ReasonMalformed, "%q must be a string, found %v", key, tok)
	}
	*dst = s
	return nil
}

func (d decoder) list(key string, limit int, dst *[]string) error {
	if err := d.delim('['); err != nil {
		return fail(ReasonMalformed, "%q must be an array of strings", key)
	}
	var out []string
	for d.More() {
		if len(out) == limit {
			return fail(ReasonTooLarge, "%q has more than %d entries", key, limit)
		}
		var s string
		if err := d.str(key+" entry", &s); err != nil {
			return err
		}
		out = append(out, s)
	}
	*dst = out
	return d.delim(']')
}

func (d decoder) deadline(dst *time.Time) error {
	var s string
	if err := d.str("deadline", &s); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fail(ReasonInvalidField, "deadline %q is not an RFC 3339 time", s)
	}
	*dst = t.UTC()
	return nil
}
