package policies

import (
	"fmt"
	"strings"
)

// A path byte's class in the canonical form that the verifier decides
// (verifier.CheckPath): the only form a path pattern's literal parts may
// take, since a pattern in any other form never matches a decided path.
const (
	// pathLiteral: written as itself, never as "%XX": the unreserved
	// characters (ALPHA DIGIT - . _ ~), the sub-delims but ";"
	// (! $ & ' ( ) * + , =), ":", "@" and the separator "/".
	pathLiteral uint8 = iota
	// pathEscaped: written only as "%XX" with upper-case hex: every other
	// printable ASCII byte (space " # % ; < > ? [ \ ] ^ ` { | }), the
	// control bytes but NUL, and every byte of non-ASCII UTF-8.
	pathEscaped
	// pathRefused: in no form: "\" and NUL, which mean different paths to
	// different servers ("/" too, when encoded: "%2F").
	pathRefused
)

// pathByteClass is the class of each byte in a canonical path.
var pathByteClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == 0 || c == '\\':
			t[c] = pathRefused
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-._~!$&'()*+,=:@/", byte(c)) >= 0:
			t[c] = pathLiteral
		default:
			t[c] = pathEscaped
		}
	}
	return t
}()

// uriByteClass is pathByteClass for the path of an MCP resource URI
// (verifier.CheckResourceURI): ";" and the braces of URI templates are
// written literally there.
var uriByteClass = func() (t [256]uint8) {
	t = pathByteClass
	for _, c := range ";{}" {
		t[c] = pathLiteral
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// CheckPathPattern reports whether the literal parts of an HTTP path
// pattern (the text around its wildcards "*" and "**") are in canonical
// form, the only form of the paths the verifier decides: it returns nil,
// or an error naming the canonical spelling ("/kb/my docs/**" is written
// "/kb/my%20docs/**") or saying why there is none. A pattern must start
// with "/" (or be "**"); the wildcards may stand anywhere, also inside an
// escape ("%*" matches any escaped byte).
func CheckPathPattern(p string) error {
	if p == "**" {
		return nil
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("does not start with \"/\"")
	}
	return notCanonical(p, true)
}

// checkPath is CheckPathPattern for a path, where "*" is a character:
// what the verifier accepts (a test case's or policy eval's path).
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("does not start with \"/\"")
	}
	return notCanonical(p, false)
}

// notCanonical is nil for a canonical p, or the error naming its
// canonical spelling or why there is none.
func notCanonical(p string, wild bool) error {
	c, err := canonicalPathLiterals(p, wild)
	if err != nil {
		return err
	}
	if c != p {
		return fmt.Errorf("is not canonical: write %q", c)
	}
	return nil
}

// canonicalPathLiterals returns the canonical spelling of a path pattern
// (wild) or a path, or an error saying why it has none. A pattern that
// starts with a wildcard rather than "/" ("**/my docs/**", in a
// condition) has its bytes and escapes made canonical, its segments only
// after the first "/".
func canonicalPathLiterals(p string, wild bool) (string, error) {
	return canonicalLiterals(p, wild, &pathByteClass)
}

// canonicalLiterals is canonicalPathLiterals with the byte classes given.
func canonicalLiterals(p string, wild bool, class *[256]uint8) (string, error) {
	var b strings.Builder
	b.Grow(len(p) + 8)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '*' {
			b.WriteByte(c)
			continue
		}
		if c == '%' && !wild {
			if i+2 < len(p) && unhex(p[i+1]) >= 0 && unhex(p[i+2]) >= 0 && byte(unhex(p[i+1])<<4|unhex(p[i+2])) == '*' {
				b.WriteByte('*')
				i += 2
				continue
			}
		}
		if c == '%' {
			if i+2 < len(p) && unhex(p[i+1]) >= 0 && unhex(p[i+2]) >= 0 {
				d := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
				switch {
				case d == '*':
					return "", fmt.Errorf("has %q, which the verifier refuses (a path carries \"*\" literally), and a literal \"*\" in a path is matched by a wildcard: write \"*\"", p[i:i+3])
				case class[d] == pathRefused || d == '/':
					return "", fmt.Errorf("can never match: the verifier refuses %q in any form", "%"+string(upperHex[d>>4])+string(upperHex[d&15]))
				case class[d] == pathLiteral:
					b.WriteByte(d)
				default:
					b.WriteByte('%')
					b.WriteByte(upperHex[d>>4])
					b.WriteByte(upperHex[d&15])
				}
				i += 2
				continue
			}
			// A wildcard inside the escape: "%*", "%E*" (upper-case hex).
			if !wild {
				b.WriteString("%25")
				continue
			}
			if i+1 < len(p) && p[i+1] == '*' {
				b.WriteByte('%')
				continue
			}
			if i+2 < len(p) && unhex(p[i+1]) >= 0 && p[i+2] == '*' {
				b.WriteByte('%')
				b.WriteByte(upperHex[unhex(p[i+1])])
				i++
				continue
			}
			b.WriteString("%25") // a literal "%"
			continue
		}
		switch class[c] {
		case pathRefused:
			return "", fmt.Errorf("can never match: the verifier refuses %q in any form", string(c))
		case pathEscaped:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	c := b.String()
	if i := strings.IndexByte(c, '/'); i >= 0 {
		clean, err := cleanPatternSegments(c[i:])
		if err != nil {
			return "", err
		}
		c = c[:i] + clean
	}
	return c, nil
}

// cleanPatternSegments removes the empty ("//"), "." and ".." segments
// of p as the verifier does from a path (RFC 3986 5.2.4, runs of slashes
// merged); a pattern that ends in "/", "." or ".." keeps a final "/". A
// ".." after a segment with a wildcard has no such spelling: it would
// remove what the wildcard matched.
func cleanPatternSegments(p string) (string, error) {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 && strings.Contains(out[len(out)-1], "*") {
				return "", fmt.Errorf("has a \"..\" after a wildcard, which no canonical path has: write the pattern without dot segments")
			}
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	c := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		c += "/"
	}
	return c, nil
}

// CheckResourcePattern reports whether an MCP resource pattern is written
// in the one spelling the verifier decides resource URIs in
// (verifier.CheckResourceURI), naming the canonical spelling where there
// is one: a lower-case scheme; file: only as file:///path, without a
// query; a lower-case authority for the other hierarchical schemes; and in
// the path the canonical bytes and escapes, no dot or empty segments, with
// ";" and the braces of URI templates written literally. Opaque patterns
// ("urn:…", "mailto:*"), and patterns that start with a wildcard where
// the scheme or authority would be ("file:**", "**"), are not checked.
func CheckResourcePattern(p string) error {
	scheme, rest, ok := SplitScheme(p)
	if !ok {
		if strings.HasPrefix(p, "/") {
			return uriPathPattern(p, p)
		}
		return nil
	}
	lower := strings.ToLower(scheme)
	if scheme != lower {
		return fmt.Errorf("has an upper-case scheme: write %q", lower+":"+rest)
	}
	_, special := SpecialScheme(lower)
	if strings.HasPrefix(rest, "*") || (!special && !strings.HasPrefix(rest, "/")) {
		return nil // any spelling, or opaque
	}
	if lower == "file" {
		if strings.HasPrefix(rest, "//*") {
			return nil
		}
		if !strings.HasPrefix(rest, "///") {
			return fmt.Errorf("is not a file:///path pattern: the verifier refuses file: URIs with a host or without \"//\" (write %q)", "file:///"+strings.TrimLeft(strings.TrimPrefix(rest, "//localhost"), "/"))
		}
		if strings.IndexByte(rest, '?') >= 0 {
			return fmt.Errorf("has a query, which the verifier refuses on file: URIs")
		}
		return uriPathPattern(p, rest[2:])
	}
	auth, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return uriPathPattern(p, rest)
	}
	end := strings.IndexByte(auth, '/')
	if end < 0 {
		end = len(auth)
	}
	if a := auth[:end]; a != strings.ToLower(a) {
		return fmt.Errorf("has an authority that is not lower case: write %q", lower+"://"+strings.ToLower(a)+auth[end:])
	}
	if end == len(auth) {
		return nil
	}
	path, _, _ := strings.Cut(auth[end:], "?")
	return uriPathPattern(p, path)
}

// uriPathPattern checks the path part of the resource pattern p.
func uriPathPattern(p, path string) error {
	c, err := canonicalLiterals(path, true, &uriByteClass)
	if err != nil {
		return err
	}
	if c != path {
		return fmt.Errorf("is not canonical: write %q", strings.Replace(p, path, c, 1))
	}
	return nil
}

// SpecialScheme reports whether scheme is one of the WHATWG URL
// standard's special schemes, which URL parsers normalise (host, port,
// "file:/x" as "file:///x"), and its default port (0 for file).
func SpecialScheme(scheme string) (defaultPort int, ok bool) {
	switch scheme {
	case "file":
		return 0, true
	case "http", "ws":
		return 80, true
	case "https", "wss":
		return 443, true
	case "ftp":
		return 21, true
	}
	return 0, false
}

// SplitScheme splits "scheme:rest" when p starts with an RFC 3986 scheme
// (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); no wildcard before the ":").
func SplitScheme(p string) (scheme, rest string, ok bool) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return p[:i], p[i+1:], true
		default:
			return "", "", false
		}
	}
	return "", "", false
}
