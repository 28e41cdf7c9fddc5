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

// FuzzCanonicalPathLiterals: the spelling that an error names is itself
// canonical (a fixed point), and an accepted path, read independently of
// the byte table, is canonical: every "%" starts an upper-case escape of
// a byte that is not literal, every other byte is literal, and no segment
// is empty (but a final one), "." or "..".
func FuzzCanonicalPathLiterals(f *testing.F) {
	for _, s := range []string{"/kb/my docs/**", "/kb/café/**", "/kb/%40ops", "/kb/x/../y", "/kb//x/.", "/a%2a", "/a%*", "/a%e*", "/a;b", "/a%zz%", "/**/../x"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, p string, wild bool) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		c, err := canonicalPathLiterals(p, wild)
		if err != nil {
			return
		}
		if c2, err := canonicalPathLiterals(c, wild); err != nil || c2 != c {
			t.Fatalf("%q → %q → %q, %v", p, c, c2, err)
		}
		if wild && strings.Contains(c, "*") {
			return
		}
		segs := strings.Split(c[1:], "/")
		for i, s := range segs {
			if s == "." || s == ".." || s == "" && i < len(segs)-1 {
				t.Fatalf("%q → %q: segment %q", p, c, s)
			}
		}
		for i := 0; i < len(c); i++ {
			switch ch := c[i]; {
			case ch == '%':
				if i+2 >= len(c) || !strings.ContainsRune(upperHex, rune(c[i+1])) || !strings.ContainsRune(upperHex, rune(c[i+2])) {
					t.Fatalf("%q → %q: bad escape at %d", p, c, i)
				}
				d := byte(unhex(c[i+1])<<4 | unhex(c[i+2]))
				if d != '%' && (d == '/' || d == 0 || d == '\\' || strings.IndexByte("-._~!$&'()*+,=:@", d) >= 0 ||
					d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d >= '0' && d <= '9') {
					t.Fatalf("%q → %q: %%%02X is not canonical", p, c, d)
				}
				i += 2
			case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', strings.IndexByte("-._~!$&'()*+,=:@/", ch) >= 0:
			default:
				t.Fatalf("%q → %q: byte %q", p, c, ch)
			}
		}
	})
}
