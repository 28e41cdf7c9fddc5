package policies

import (
	"fmt"
	"strings"
	"testing"
)

// TestPathPatternByteClasses pins, byte by byte, the canonical form of a
// path pattern's literal parts: what CheckPathPattern accepts must be what
// verifier.CheckPath accepts (a path in any other form is refused before
// it is decided), so that a pattern can always be written to match the
// paths the verifier decides. The table is written out rather than
// derived, to be read against verifier/canonical.go.
func TestPathPatternByteClasses(t *testing.T) {
	literal := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~" + // unreserved
		"!$&'()*+,=" + // sub-delims but ";"
		":@/"
	refused := "\x00\\"
	for c := range 256 {
		b := byte(c)
		var want uint8
		switch {
		case strings.IndexByte(literal, b) >= 0:
			want = pathLiteral
		case strings.IndexByte(refused, b) >= 0:
			want = pathRefused
		default:
			want = pathEscaped
		}
		if pathByteClass[c] != want {
			t.Errorf("byte %q: class %d, want %d", b, pathByteClass[c], want)
		}
		esc := fmt.Sprintf("/a%%%02X", c)
		lower := fmt.Sprintf("/a%%%02x", c)
		lit := "/a" + string([]byte{b})
		switch {
		case b == '*': // the wildcard: "*" is glob syntax, "%2A" is refused
			if CheckPathPattern(esc) == nil {
				t.Errorf("%q accepted", esc)
			}
		case b == '/':
			if CheckPathPattern(lit) != nil || CheckPathPattern(esc) == nil {
				t.Errorf("%q or %q", lit, esc)
			}
		case want == pathLiteral:
			if err := CheckPathPattern(lit); err != nil {
				t.Errorf("%q: %v", lit, err)
			}
			if err := CheckPathPattern(esc); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("write %q", lit)) {
				t.Errorf("%q: %v, want write %q", esc, err, lit)
			}
		case want == pathEscaped && b == '%':
			if err := CheckPathPattern(esc); err != nil {
				t.Errorf("%q: %v", esc, err)
			}
		case want == pathEscaped:
			if err := CheckPathPattern(esc); err != nil {
				t.Errorf("%q: %v", esc, err)
			}
			if err := CheckPathPattern(lit); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("write %q", esc)) {
				t.Errorf("%q: %v, want write %q", lit, err, esc)
			}
		default: // refused in every form
			for _, p := range []string{lit, esc} {
				if err := CheckPathPattern(p); err == nil || !strings.Contains(err.Error(), "can never match") {
					t.Errorf("%q: %v", p, err)
				}
			}
		}
		if lower != esc && want != pathLiteral && b != '*' && want != pathRefused {
			if err := CheckPathPattern(lower); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("write %q", esc)) {
				t.Errorf("%q: %v, want write %q", lower, err, esc)
			}
		}
	}
}
