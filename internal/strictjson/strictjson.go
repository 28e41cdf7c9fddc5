// Package strictjson decodes JSON the way a case-sensitive reader must
// agree with every other one: a duplicate key, or keys that encoding/json
// would take for the same one (it matches keys with Unicode case folding,
// so "name", "Name", "NAME" and "ſ"-for-"s" spellings collide, and keeps
// the last), anywhere in the document are refused, as is data after the
// value and nesting deeper than a bound. Only the top levels are built as
// maps and slices; deeper values are checked the same way and kept as the
// bytes that were sent, so a large document costs about its own size.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNumberLen is the longest number literal Decode and Check accept
// (see CheckNumber).
const MaxNumberLen = 400

// MaxExponent bounds the written exponent of a number (see CheckNumber).
const MaxExponent = 400

// CheckNumber refuses a number that would cost more to read than its
// length, before anything parses it: parsing decimal digits into a big
// number (math/big, go-cty) costs time quadratic in their count, and a
// large exponent makes its decimal text (go-cty's number to string)
// as long as the exponent. So n may have at most MaxNumberLen characters
// and an exponent (e, E, or go-cty's binary p, P) of at most MaxExponent
// in magnitude, and must not overflow float64, as JavaScript's and Go's
// JSON readers would (to Infinity, or an error). No number that such
// readers hold exactly is refused: a float64 has 17 significant digits
// and an integer of more than 309 digits overflows it. The message quotes
// at most 128 bytes of n.
func CheckNumber(n string) error { return checkNumber(n) }

func checkNumber[T string | []byte](n T) error {
	if len(n) > MaxNumberLen {
		return fmt.Errorf("the number %s has %d characters, more than %d", Quote(string(n[:min(len(n), 129)])), len(n), MaxNumberLen)
	}
	i := 0
	for i < len(n) && n[i] != 'e' && n[i] != 'E' && n[i] != 'p' && n[i] != 'P' {
		i++
	}
	if i == len(n) {
		if len(n) <= 309 { // at most 309 digits: within float64's range
			return nil
		}
	} else {
		exp := strings.TrimLeft(strings.TrimLeft(string(n[i+1:]), "+-"), "0")
		if v, err := strconv.Atoi(exp); len(exp) > 4 || err == nil && v > MaxExponent {
			return fmt.Errorf("the number %s has an exponent beyond ±%d", Quote(string(n)), MaxExponent)
		}
	}
	if _, err := strconv.ParseFloat(string(n), 64); errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("the number %s is beyond float64's range (JavaScript reads it as Infinity)", Quote(string(n)))
	}
	return nil
}

// Decode reads exactly one JSON value. Objects and arrays at depth < build
// become map[string]any (keys as written) and []any; deeper ones are
// returned as json.RawMessage after the same checks. Strings are string,
// numbers json.Number, and true, false and null bool and nil. The syntax is
// checked by json.Valid first; the scan that follows allocates only for
// the built levels and one key set per open object.
func Decode(data []byte, maxDepth, build int) (any, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // for its message
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, err
	}
	s := &scanner{data: data, max: maxDepth, build: build}
	v, err := s.value(0)
	if err != nil {
		return nil, err
	}
	if s.skip(); s.i != len(data) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// Check runs Decode's checks without building anything. number, when
// not nil, is called with each number, and numErr is the first error it
// returned (when the document passed the other checks, err == nil).
// isObject reports whether the value is a JSON object.
func Check(data []byte, maxDepth int, number func([]byte) error) (isObject bool, numErr, err error) {
	if !json.Valid(data) {
		_, err := Decode(data, maxDepth, 0) // for its message
		return false, nil, err
	}
	s := scanner{data: data, max: maxDepth, number: number}
	if _, err := s.value(0); err != nil {
		return false, nil, err
	}
	if s.skip(); s.i != len(data) {
		return false, nil, errors.New("data after the JSON value")
	}
	return data[skipSpace(data)] == '{', s.numErr, nil
}

func skipSpace(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanner walks JSON that json.Valid accepted.
type scanner struct {
	data       []byte
	i          int
	max, build int
	number     func([]byte) error // Check's
	numErr     error
}

func (s *scanner) skip() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value(depth int) (any, error) {
	if depth > s.max {
		return nil, fmt.Errorf("nested deeper than %d levels", s.max)
	}
	s.skip()
	start := s.i
	switch c := s.data[s.i]; c {
	case '{', '[':
		built := depth < s.build
		var obj map[string]any
		var arr []any
		if built && c == '{' {
			obj = map[string]any{}
		} else if built {
			arr = []any{}
		}
		var keys keySet
		s.i++
		for {
			s.skip()
			if d := s.data[s.i]; d == '}' || d == ']' {
				s.i++
				break
			}
			if s.data[s.i] == ',' {
				s.i++
				s.skip()
			}
			var k []byte
			if c == '{' {
				var err error
				if k, err = s.str(); err != nil {
					return nil, err
				}
				if err := keys.add(k); err != nil {
					return nil, err
				}
				s.skip()
				s.i++ // ':'
			}
			v, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if obj != nil {
				obj[string(k)] = v
			} else if built {
				arr = append(arr, v)
			}
		}
		switch {
		case obj != nil:
			return obj, nil
		case built:
			return arr, nil
		}
		if depth > s.build { // in a container not built: not kept
			return nil, nil
		}
		return json.RawMessage(s.data[start:s.i]), nil
	case '"':
		b, err := s.str()
		if err != nil || depth > s.build { // in a container not built: not kept
			return nil, err
		}
		return string(b), nil
	case 't':
		s.i += 4
		return true, nil
	case 'f':
		s.i += 5
		return false, nil
	case 'n':
		s.i += 4
		return nil, nil
	}
	for s.i < len(s.data) && strings.IndexByte(",]} \t\r\n", s.data[s.i]) < 0 {
		s.i++
	}
	if err := checkNumber(s.data[start:s.i]); err != nil {
		return nil, err
	}
	if s.number != nil && s.numErr == nil {
		s.numErr = s.number(s.data[start:s.i])
	}
	if depth > s.build {
		return nil, nil
	}
	return json.Number(s.data[start:s.i]), nil
}

// str reads a string at s.i, its content unescaped (a slice of s.data
// when there was no escape); keys and values with invalid UTF-8 are
// refused (encoding/json would replace the bytes, other readers keep them).
func (s *scanner) str() ([]byte, error) {
	start := s.i
	s.i++
	escaped := false
	for s.data[s.i] != '"' {
		if s.data[s.i] == '\\' {
			escaped = true
			s.i++
		}
		s.i++
	}
	s.i++
	raw := s.data[start:s.i]
	if !escaped {
		if !utf8.Valid(raw) {
			return nil, errors.New("invalid UTF-8 in a string")
		}
		return raw[1 : len(raw)-1], nil
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("invalid UTF-8 in a string")
	}
	if err := checkSurrogates(raw); err != nil {
		return nil, err
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// checkSurrogates refuses a \u escape of a UTF-16 surrogate that is not
// half of a pair (a high one followed by an escaped low one):
// encoding/json reads it as U+FFFD, JavaScript's JSON.parse keeps it, so
// two different names would be one to the policy.
func checkSurrogates(raw []byte) error {
	high := false // the last escape was a high surrogate
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			if high {
				return errLoneSurrogate
			}
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' || i+4 >= len(raw) {
			if high {
				return errLoneSurrogate
			}
			continue
		}
		r, err := strconv.ParseUint(string(raw[i+1:i+5]), 16, 32)
		if err != nil {
			return err
		}
		i += 4
		switch {
		case r >= 0xD800 && r < 0xDC00: // high
			if high {
				return errLoneSurrogate
			}
			high = true
		case r >= 0xDC00 && r < 0xE000: // low
			if !high {
				return errLoneSurrogate
			}
			high = false
		default:
			if high {
				return errLoneSurrogate
			}
		}
	}
	if high {
		return errLoneSurrogate
	}
	return nil
}

var errLoneSurrogate = errors.New("a lone surrogate escape (\\uD800–\\uDFFF not in a pair) in a string")

// keySet holds one object's keys; up to 16 are compared with
// bytes.EqualFold (no allocation), more are kept in a map by their Fold.
type keySet struct {
	n     int
	small [16][]byte
	big   map[string][]byte
}

func (s *keySet) add(k []byte) error {
	if s.big == nil {
		for _, prev := range s.small[:s.n] {
			if bytes.EqualFold(prev, k) {
				return dupKey(prev, k)
			}
		}
		if s.n < len(s.small) {
			s.small[s.n] = k
			s.n++
			return nil
		}
		s.big = make(map[string][]byte, 32)
		for _, e := range s.small[:s.n] {
			s.big[Fold(string(e))] = e
		}
	}
	f := Fold(string(k))
	if prev, dup := s.big[f]; dup {
		return dupKey(prev, k)
	}
	s.big[f] = k
	return nil
}

func dupKey(prev, k []byte) error {
	if bytes.Equal(prev, k) {
		return fmt.Errorf("duplicate key %s", Quote(string(k)))
	}
	return fmt.Errorf("keys %s and %s are the same key to case-insensitive readers", Quote(string(prev)), Quote(string(k)))
}

// Fold maps s to a form that two keys share exactly when encoding/json
// (bytes.EqualFold, Unicode simple folding) takes them for the same key:
// every rune becomes the smallest rune of its case-folding orbit.
func Fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s) // the smallest of {a, A} is A; of {k, K, K} K; of {s, S, ſ} S
	}
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

// Quote renders s as a JSON string for a message, cut at 128 bytes.
func Quote(s string) string {
	if len(s) > 128 {
		s = s[:128] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
