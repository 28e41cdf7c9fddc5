package svid

import (
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// keys of the claims object, in contract order; their index is their bit in
// scanner.seen.
var claimKeys = [...]string{"v", "agent", "task", "model", "prompt", "scope", "principal", "chain", "deadline"}

// scanner decodes the claims object from valid UTF-8 JSON.
type scanner struct {
	data []byte
	pos  int
	seen uint16
}

func (s *scanner) object() (Claims, error) {
	var c Claims
	if err := s.expect('{'); err != nil {
		return c, err
	}
	if s.peek() == '}' {
		s.pos++
	} else {
		if err := s.members(&c); err != nil {
			return Claims{}, err
		}
	}
	if s.ws(); s.pos != len(s.data) {
		return Claims{}, fail(ReasonMalformed, "trailing data after the claims object at offset %d", s.pos)
	}
	if s.seen&1 == 0 {
		return Claims{}, fail(ReasonUnsupportedVersion, `"v" missing`)
	}
	return c, nil
}

func (s *scanner) members(c *Claims) error {
	for {
		if err := s.member(c); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.unexpected(`"," or "}"`)
		}
	}
}

func (s *scanner) member(c *Claims) error {
	if s.peek() != '"' {
		return s.unexpected("a key")
	}
	key, err := s.str()
	if err != nil {
		return err
	}
	if err := s.expect(':'); err != nil {
		return err
	}
	bit := -1
	for i, k := range claimKeys {
		if k == key {
			bit = i
		}
	}
	if bit < 0 {
		return fail(ReasonMalformed, "unknown key %q", key)
	}
	if s.seen&(1<<bit) != 0 {
		return fail(ReasonMalformed, "duplicate key %q", key)
	}
	s.seen |= 1 << bit
	return s.value(c, key)
}

func (s *scanner) value(c *Claims, key string) error {
	switch key {
	case "v":
		return s.version(&c.V)
	case "agent":
		return s.field(key, &c.Agent)
	case "task":
		return s.field(key, &c.Task)
	case "model":
		return s.field(key, &c.Model)
	case "prompt":
		return s.field(key, &c.Prompt)
	case "principal":
		return s.field(key, &c.Principal)
	case "scope":
		return s.list(key, MaxScopes, &c.Scope)
	case "chain":
		return s.list(key, MaxChain, &c.Chain)
	default: // deadline
		var v string
		if err := s.field(key, &v); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fail(ReasonInvalidField, "deadline %q is not an RFC 3339 time", v)
		}
		c.Deadline = t.UTC()
		return nil
	}
}

func (s *scanner) field(key string, dst *string) error {
	if s.peek() != '"' {
		return fail(ReasonMalformed, "%q must be a string, found %s", key, s.kind())
	}
	v, err := s.str()
	*dst = v
	return err
}

func (s *scanner) list(key string, limit int, dst *[]string) error {
	if s.peek() != '[' {
		return fail(ReasonMalformed, "%q must be an array of strings, found %s", key, s.kind())
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	var out []string
	for {
		if len(out) == limit {
			return fail(ReasonTooLarge, "%q has more than %d entries", key, limit)
		}
		var v string
		if err := s.field(key+" entry", &v); err != nil {
			return err
		}
		out = append(out, v)
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			*dst = out
			return nil
		default:
			return s.unexpected(`"," or "]"`)
		}
	}
}

func (s *scanner) version(v *int) error {
	if k := s.kind(); k != "number" {
		return fail(ReasonMalformed, `"v" must be a number, found %s`, k)
	}
	start := s.pos
	if err := s.number(); err != nil {
		return err
	}
	n, err := strconv.Atoi(string(s.data[start:s.pos]))
	if err != nil {
		return fail(ReasonUnsupportedVersion, `"v" %s is not an integer`, s.data[start:s.pos])
	}
	if n != Version {
		return fail(ReasonUnsupportedVersion, `"v" is %d, this build reads %d`, n, Version)
	}
	*v = n
	return nil
}

// number consumes a JSON number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
func (s *scanner) number() error {
	d := s.data
	if s.pos < len(d) && d[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(d) && d[s.pos] == '0':
		s.pos++
	case s.digits() == 0:
		return s.unexpected("a digit")
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.unexpected("a digit")
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.unexpected("a digit")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// str consumes a JSON string at s.pos (which holds '"'). Lone surrogates
// decode to U+FFFD, as encoding/json does.
func (s *scanner) str() (string, error) {
	s.pos++
	start := s.pos
	for s.pos < len(s.data) {
		switch b := s.data[s.pos]; {
		case b == '"':
			v := string(s.data[start:s.pos])
			s.pos++
			return v, nil
		case b == '\\':
			return s.escaped(start)
		case b < 0x20:
			return "", fail(ReasonMalformed, "control character in string at offset %d", s.pos)
		default:
			s.pos++
		}
	}
	return "", fail(ReasonMalformed, "unexpected EOF in string")
}

func (s *scanner) escaped(start int) (string, error) {
	buf := append(make([]byte, 0, s.pos-start+16), s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		b := s.data[s.pos]
		switch {
		case b == '"':
			s.pos++
			return string(buf), nil
		case b < 0x20:
			return "", fail(ReasonMalformed, "control character in string at offset %d", s.pos)
		case b != '\\':
			buf = append(buf, b)
			s.pos++
			continue
		}
		var err error
		if buf, err = s.escape(buf); err != nil {
			return "", err
		}
	}
	return "", fail(ReasonMalformed, "unexpected EOF in string")
}

var simpleEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func (s *scanner) escape(buf []byte) ([]byte, error) {
	if s.pos+1 >= len(s.data) {
		return nil, fail(ReasonMalformed, "unexpected EOF in string")
	}
	e := s.data[s.pos+1]
	if r, ok := simpleEscapes[e]; ok {
		s.pos += 2
		return append(buf, r), nil
	}
	if e != 'u' {
		return nil, fail(ReasonMalformed, "invalid escape \\%c at offset %d", e, s.pos)
	}
	r, ok := s.hex4(s.pos + 2)
	if !ok {
		return nil, fail(ReasonMalformed, "invalid \\u escape at offset %d", s.pos)
	}
	s.pos += 6
	if utf16.IsSurrogate(r) {
		r2, ok := rune(-1), false
		if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
			r2, ok = s.hex4(s.pos + 2)
		}
		if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
			s.pos += 6
			r = dec
		} else {
			r = utf8.RuneError
		}
	}
	return utf8.AppendRune(buf, r), nil
}

func (s *scanner) hex4(at int) (rune, bool) {
	if at+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, b := range s.data[at : at+4] {
		var v byte
		switch {
		case b >= '0' && b <= '9':
			v = b - '0'
		case b >= 'a' && b <= 'f':
			v = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			v = b - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips spaces and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos == len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) expect(b byte) error {
	if s.peek() != b {
		return s.unexpected(strconv.Quote(string(b)))
	}
	s.pos++
	return nil
}

// kind names the JSON value starting at the next byte.
func (s *scanner) kind() string {
	switch b := s.peek(); {
	case b == '"':
		return "string"
	case b == '{':
		return "object"
	case b == '[':
		return "array"
	case b == '-' || b >= '0' && b <= '9':
		return "number"
	case b == 't' || b == 'f':
		return "boolean"
	case b == 'n':
		return "null"
	case b == 0:
		return "EOF"
	}
	return "invalid character"
}

func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.data) {
		return fail(ReasonMalformed, "unexpected EOF, expected %s", want)
	}
	return fail(ReasonMalformed, "expected %s at offset %d, found %q", want, s.pos, s.data[s.pos])
}
